//! The server's side: who is calling, and whether they may.

use std::sync::Arc;

use http::HeaderMap;
use http::header::AUTHORIZATION;

use super::{Account, Auth, DSL_PRIORITY, Rule};
use crate::Error;
use crate::registry::Endpoint;
use crate::wire::MICRO_CALLER;

/// Who made a request, as the serving service's auth found it: the account
/// of the token it came with, and the original caller a service passed on.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    account: Option<Account>,
    caller: Option<Account>,
    token: Option<Arc<str>>,
    caller_token: Option<Arc<str>>,
}

impl Credentials {
    /// The account the request's token speaks for.
    pub fn account(&self) -> Option<&Account> {
        self.account.as_ref()
    }

    /// The original caller, when a service calls on someone's behalf.
    pub fn caller(&self) -> Option<&Account> {
        self.caller.as_ref()
    }

    /// The token the request came with, to pass on.
    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The original caller's token, else the request's own: what a call
    /// made on this request's behalf sends as `Micro-Caller`.
    pub(crate) fn on_behalf_of(&self) -> Option<&str> {
        self.caller_token.as_deref().or(self.token.as_deref())
    }
}

/// The rules an endpoint's metadata declares: `auth = public` (anyone),
/// `auth = account` (any account) or `scopes = a,b` (accounts with any of
/// them), at [`DSL_PRIORITY`].
pub(crate) fn declared(service: &str, endpoint: &Endpoint) -> Vec<Rule> {
    let rule = |scope: &str| {
        Rule::grant(endpoint.name.clone(), scope)
            .service(service)
            .priority(DSL_PRIORITY)
    };
    match endpoint.metadata.get("auth").map(String::as_str) {
        Some("public") => return vec![rule("")],
        Some("account") => return vec![rule("*")],
        _ => {}
    }
    endpoint
        .metadata
        .get("scopes")
        .map(|scopes| {
            scopes
                .split(',')
                .filter(|s| !s.is_empty())
                .map(rule)
                .collect()
        })
        .unwrap_or_default()
}

/// The bearer token of `Authorization`, or why there is none usable.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, &'static str> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| "invalid token: malformed")?;
    let (scheme, token) = value.split_once(' ').ok_or("invalid token: malformed")?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("not a bearer token");
    }
    Ok(Some(token.trim()))
}

/// The account of a client certificate, under mutual TLS: a request
/// extension the connection sets.
#[derive(Clone, Debug)]
pub(crate) struct Peer(pub(crate) Arc<Account>);

impl Peer {
    /// The account of a client certificate with subject common name `name`.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn named(name: &str) -> Self {
        Self(Arc::new(Account::new(
            name,
            super::AccountKind::Service,
            vec!["mtls".into(), format!("mtls:{name}")],
        )))
    }
}

/// A service's auth on its server: the auth, and the service's name for
/// the rules.
#[derive(Clone, Debug)]
pub(crate) struct Guard {
    pub(crate) auth: Auth,
    pub(crate) service: Arc<str>,
}

impl Guard {
    /// Who is calling `resource` (an endpoint, or `topic:<topic>`), if the
    /// rules let them; the credentials leave `headers`, so that they are
    /// not passed on as metadata.
    ///
    /// # Errors
    /// 401 when the rules need an account and the request has no valid
    /// token, 403 when they refuse the account it has, 503 when the
    /// issuer's keys cannot be fetched.
    pub(crate) async fn check(
        &self,
        resource: &str,
        declared: &[Rule],
        headers: &mut HeaderMap,
        peer: Option<&Peer>,
    ) -> Result<Credentials, Error> {
        self.check_at(resource, declared, headers, None, peer).await
    }

    /// As [`check`](Self::check), with tokens judged at `at`: when the
    /// durable event they came with was stored.
    pub(crate) async fn check_at(
        &self,
        resource: &str,
        declared: &[Rule],
        headers: &mut HeaderMap,
        at: Option<std::time::SystemTime>,
        peer: Option<&Peer>,
    ) -> Result<Credentials, Error> {
        let (token, why) = match bearer(headers) {
            Ok(token) => (token.map(Arc::<str>::from), None),
            Err(why) => (None, Some(why.to_owned())),
        };
        let mut credentials = Credentials::default();
        let mut why = why;
        if let Some(token) = token {
            match self.auth.verify_at(&token, at).await {
                Ok(account) => {
                    credentials.account = Some(account);
                    credentials.token = Some(token);
                }
                Err(e) if e.code() == crate::code::UNAVAILABLE => return Err(e),
                // A bad token counts as none: a public endpoint still
                // serves, and others say why below.
                Err(e) => why = Some(e.detail().to_owned()),
            }
        }
        if credentials.account.is_some()
            && let Some(caller) = headers.get(&MICRO_CALLER).and_then(|v| v.to_str().ok())
        {
            match self.auth.verify_at(caller, at).await {
                Ok(account) => {
                    credentials.caller = Some(account);
                    credentials.caller_token = Some(Arc::from(caller));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "the Micro-Caller token is not valid; ignored")
                }
            }
        }
        headers.remove(AUTHORIZATION);
        headers.remove(&MICRO_CALLER);
        // Without a token, a client certificate speaks for the caller.
        if credentials.account.is_none()
            && let Some(peer) = peer
        {
            credentials.account = Some((*peer.0).clone());
        }
        let account = credentials.account.as_ref();
        if self
            .auth
            .allows_with(declared, &self.service, resource, account)
        {
            return Ok(credentials);
        }
        Err(match account {
            None => Error::unauthorized(format!(
                "{resource} needs a valid token: {}",
                why.as_deref()
                    .unwrap_or("none was sent (Authorization: Bearer <token>)")
            )),
            Some(a) => Error::forbidden(format!("account \"{}\" may not call {resource}", a.id)),
        })
    }
}
