//! A service's own identity: its token, kept fresh in the background.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::{Account, AccountKind, Auth, AuthError, TokenKind, Tokens};

/// A service's own token, which the calls it makes for its requests carry
/// in `Authorization` (the original caller's going on as `Micro-Caller`).
/// Cheap to clone; renewed in the background until the last clone is
/// dropped.
#[derive(Clone)]
pub struct Identity {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    token: RwLock<Option<Arc<str>>>,
    renewing: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self
            .renewing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

/// How an identity gets its next tokens.
enum Source {
    /// Minted by the service's own issuer, for the service's name.
    Minted(Auth, Account),
    /// Logged in to the service's own issuer.
    Local(Auth, String, String),
    /// Logged in to the issuer at a URL, over HTTP.
    Remote(String, String, String),
}

impl Identity {
    /// An identity with a fixed token.
    pub fn fixed(id: impl Into<String>, token: impl Into<String>) -> Self {
        Self::with(id.into(), Some(Arc::from(token.into())))
    }

    fn with(id: String, token: Option<Arc<str>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                id,
                token: RwLock::new(token),
                renewing: Mutex::new(None),
            }),
        }
    }

    /// The account id it speaks for.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The current token.
    pub fn token(&self) -> Option<Arc<str>> {
        self.inner
            .token
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The identity of service `name`: logged in with `credentials` (from
    /// `MICRO_AUTH_ID` and `MICRO_AUTH_SECRET`) to `auth` if it issues, else
    /// to the issuer at `issuer` (its base URL); without credentials, a
    /// service token `auth` mints for `name` (scope `service`), or none on
    /// a verifier. Renewed at two thirds of each token's life.
    ///
    /// # Errors
    /// The first login failing (401 for wrong credentials, 503 for an
    /// issuer that cannot be reached).
    pub(crate) async fn start(
        auth: &Auth,
        name: &str,
        credentials: Option<(String, String)>,
        issuer: Option<String>,
    ) -> crate::Result<Option<Self>> {
        let source = match (credentials, auth.issues(), issuer) {
            (Some((id, secret)), true, _) => Source::Local(auth.clone(), id, secret),
            (Some((id, secret)), false, Some(url)) => Source::Remote(url, id, secret),
            (Some(_), false, None) => {
                return Err(AuthError::Invalid(
                    "MICRO_AUTH_ID is set but no issuer: set MICRO_AUTH_ADDRESS to the issuer's URL"
                        .into(),
                )
                .into());
            }
            (None, true, _) => {
                let account = Account::new(name, AccountKind::Service, vec!["service".into()]);
                Source::Minted(auth.clone(), account)
            }
            (None, false, _) => return Ok(None),
        };
        let id = match &source {
            Source::Minted(_, account) => account.id.clone(),
            Source::Local(_, id, _) | Source::Remote(_, id, _) => id.clone(),
        };
        let (token, mut refresh, mut every) = source.login(None).await?;
        let identity = Self::with(id, Some(Arc::from(token)));
        let weak = Arc::downgrade(&identity.inner);
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else { return };
                match source.login(refresh.as_deref()).await {
                    Ok((token, next, ttl)) => {
                        *inner.token.write().unwrap_or_else(|e| e.into_inner()) =
                            Some(Arc::from(token));
                        refresh = next;
                        every = ttl;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, id = %inner.id, "renewing the service's token failed; trying again");
                        refresh = None;
                        every = Duration::from_secs(5);
                    }
                }
            }
        });
        *identity
            .inner
            .renewing
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(Some(identity))
    }
}

impl Source {
    /// A new token, the refresh token for the next, and when to renew.
    async fn login(
        &self,
        refresh: Option<&str>,
    ) -> crate::Result<(String, Option<String>, Duration)> {
        let renew = |secs: u64| Duration::from_secs((secs * 2 / 3).max(1));
        match self {
            Source::Minted(auth, account) => {
                let ttl = auth.inner.access_ttl;
                let token = auth.issue(account, TokenKind::Service, ttl)?;
                Ok((token, None, renew(ttl.as_secs())))
            }
            Source::Local(auth, id, secret) => {
                let tokens = match refresh {
                    Some(r) => match auth.refresh(r).await {
                        Ok(t) => t,
                        Err(_) => auth.token(id, secret).await?,
                    },
                    None => auth.token(id, secret).await?,
                };
                Ok((
                    tokens.access,
                    Some(tokens.refresh),
                    renew(tokens.expires_in),
                ))
            }
            Source::Remote(url, id, secret) => {
                let tokens: Tokens = match refresh {
                    Some(r) => {
                        match post(url, "Auth.Refresh", &serde_json::json!({ "refresh": r })).await
                        {
                            Ok(t) => t,
                            Err(_) => {
                                post(
                                    url,
                                    "Auth.Token",
                                    &serde_json::json!({ "id": id, "secret": secret }),
                                )
                                .await?
                            }
                        }
                    }
                    None => {
                        post(
                            url,
                            "Auth.Token",
                            &serde_json::json!({ "id": id, "secret": secret }),
                        )
                        .await?
                    }
                };
                Ok((
                    tokens.access,
                    Some(tokens.refresh),
                    renew(tokens.expires_in),
                ))
            }
        }
    }
}

/// Calls `endpoint` of the issuer at `url` with `body`.
async fn post<T: serde::de::DeserializeOwned>(
    url: &str,
    endpoint: &'static str,
    body: &serde_json::Value,
) -> crate::Result<T> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| AuthError::Invalid(format!("the issuer's URL \"{url}\": {e}")))?;
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = http::Method::POST;
    parts.uri = uri;
    parts.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    parts.headers.insert(
        crate::wire::MICRO_ENDPOINT.clone(),
        http::HeaderValue::from_static(endpoint),
    );
    let stack = crate::transport::Stack::direct();
    let exchange = stack.exchange(
        parts,
        Bytes::from(body.to_string()),
        1024 * 1024,
        "auth",
        url,
    );
    let (head, bytes) = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| AuthError::Unavailable(format!("the issuer at {url} did not answer in 5s")))?
        .map_err(crate::transport::Failure::into_error)?;
    if !head.status.is_success() {
        return Err(crate::Error::from_json(&bytes).unwrap_or_else(|| {
            crate::Error::bad_gateway(format!("the issuer at {url}: status {}", head.status))
        }));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| crate::Error::bad_gateway(format!("the issuer at {url}: {e}")))
}
