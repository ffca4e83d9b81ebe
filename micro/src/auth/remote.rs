//! Another issuer's keys, from its JWKS document.

use super::*;

/// The keys of another issuer, fetched from its JWKS URL and fetched again
/// when a token names a key not seen yet (at most once a second).
pub(super) struct Remote {
    pub(super) url: String,
    pub(super) keys: RwLock<HashMap<String, DecodingKey>>,
    pub(super) fetched: tokio::sync::Mutex<Option<Instant>>,
}

impl Remote {
    /// Whether the issuer's document, as last fetched, has `kid`.
    pub(super) fn has(&self, kid: &str) -> bool {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(kid)
    }

    pub(super) fn get(&self, kid: &str) -> Option<DecodingKey> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(kid)
            .cloned()
    }

    /// Fetches the JWKS document again, at most once a second.
    pub(super) async fn fetch(&self) -> Result<(), AuthError> {
        let mut fetched = self.fetched.lock().await;
        if fetched.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
            return Ok(());
        }
        *fetched = Some(Instant::now());
        let doc = fetch_json(&self.url).await?;
        let keys = keys::from_jwks(&doc);
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys.into_iter().collect();
        Ok(())
    }
}

/// GETs `url` and reads its JSON body.
async fn fetch_json(url: &str) -> Result<serde_json::Value, AuthError> {
    let unavailable =
        |why: String| AuthError::Unavailable(format!("the issuer's keys at {url}: {why}"));
    let uri: http::Uri = url.parse().map_err(|e| unavailable(format!("{e}")))?;
    let mut parts = http::Request::new(()).into_parts().0;
    parts.uri = uri;
    let stack = crate::transport::Stack::direct();
    let exchange = stack.exchange(parts, Bytes::new(), 1024 * 1024, "auth", url);
    let (head, body) = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| unavailable("no answer in 5s".into()))?
        .map_err(|e| unavailable(e.into_error().to_string()))?;
    if !head.status.is_success() {
        return Err(unavailable(format!("status {}", head.status)));
    }
    serde_json::from_slice(&body).map_err(|e| unavailable(format!("not JSON: {e}")))
}
