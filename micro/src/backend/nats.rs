//! A NATS connection that every part of one [`Backends`](super::Backends)
//! bundle pointing at the same URL shares.

use std::fmt;
use std::sync::Arc;

use tokio::sync::OnceCell;

/// A connection to the NATS server at one URL, opened on first use and
/// shared by the parts that hold it (the broker now; the store, events and
/// sync as they come).
pub(crate) struct NatsConnection {
    url: String,
    client: OnceCell<async_nats::Client>,
}

impl fmt::Debug for NatsConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConnection")
            .field("url", &self.url)
            .field("connected", &self.client.initialized())
            .finish()
    }
}

impl NatsConnection {
    /// A connection to `url`, not opened yet.
    pub(crate) fn new(url: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            url: url.into(),
            client: OnceCell::new(),
        })
    }

    /// A connection over a client the user opened.
    pub(crate) fn from_client(client: async_nats::Client) -> Arc<Self> {
        Arc::new(Self {
            url: String::new(),
            client: OnceCell::new_with(Some(client)),
        })
    }

    /// The client, connecting on the first call.
    ///
    /// # Errors
    /// Why the server could not be reached, naming its URL.
    pub(crate) async fn client(&self) -> Result<&async_nats::Client, String> {
        self.client
            .get_or_try_init(|| async {
                async_nats::connect(self.url.as_str())
                    .await
                    .map_err(|e| format!("nats at {}: {e}", self.url))
            })
            .await
    }

    /// The client, if it is connected.
    pub(crate) fn connected(&self) -> Option<&async_nats::Client> {
        self.client.get()
    }
}

/// `key` as lowercase hex: any string as a valid NATS subject token or KV
/// key, in the same byte order.
pub(crate) fn hex(key: &str) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(key.len() * 2);
    for b in key.bytes() {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}
