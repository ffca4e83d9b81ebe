//! A Redis connection that every part of one [`Backends`](super::Backends)
//! bundle pointing at the same URL shares.

use std::fmt;
use std::sync::Arc;

use tokio::sync::OnceCell;

/// How long connecting may take before calls fail with 503.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A multiplexed, reconnecting connection to the Redis server at one URL,
/// opened on first use.
pub(crate) struct RedisConnection {
    url: String,
    client: redis::Client,
    manager: OnceCell<redis::aio::ConnectionManager>,
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnection")
            .field("url", &self.url)
            .field("connected", &self.manager.initialized())
            .finish()
    }
}

impl RedisConnection {
    /// A connection to `url`, not opened yet.
    ///
    /// # Errors
    /// Why Redis does not take the URL.
    pub(crate) fn new(url: &str) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis URL \"{url}\": {e}"))?;
        Ok(Arc::new(Self {
            url: url.to_owned(),
            client,
            manager: OnceCell::new(),
        }))
    }

    /// The server's URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The client, for connections of their own (pub/sub).
    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The shared connection, connecting on the first call; a failed
    /// attempt is tried again on the next call.
    ///
    /// # Errors
    /// Why the server could not be reached, naming its URL.
    pub(crate) async fn manager(&self) -> Result<redis::aio::ConnectionManager, String> {
        self.manager
            .get_or_try_init(|| self.connect(Self::config()))
            .await
            .cloned()
    }

    /// A connection of its own, not shared: for blocking reads, which would
    /// hold up every other caller of the shared one. Replies may take up to
    /// `response_timeout`; it reconnects by itself.
    ///
    /// # Errors
    /// Why the server could not be reached, naming its URL.
    pub(crate) async fn dedicated(
        &self,
        response_timeout: std::time::Duration,
    ) -> Result<redis::aio::ConnectionManager, String> {
        self.connect(Self::config().set_response_timeout(Some(response_timeout)))
            .await
    }

    /// How every connection here connects: within [`CONNECT_TIMEOUT`],
    /// one retry.
    fn config() -> redis::aio::ConnectionManagerConfig {
        redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_number_of_retries(1)
    }

    async fn connect(
        &self,
        config: redis::aio::ConnectionManagerConfig,
    ) -> Result<redis::aio::ConnectionManager, String> {
        self.client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| format!("redis at {}: {e}", self.url))
    }
}

/// Whether `e` means the server could not be reached (503), rather than
/// that it refused the command.
pub(crate) fn unreachable(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}
