//! Per-call options.

use std::time::Duration;

use super::RetryPolicy;
use crate::Context;
use crate::codec::ContentType;
use crate::metadata::Metadata;
use crate::selector::Filter;

/// Options for one call: deadline, address, codec, metadata and the context
/// it is made on behalf of.
///
/// ```
/// use std::time::Duration;
/// use micro::client::CallOptions;
/// use micro::codec::ContentType;
///
/// let opts = CallOptions::new()
///     .timeout(Duration::from_millis(250))
///     .address("127.0.0.1:8080")
///     .content_type(ContentType::MsgPack)
///     .metadata("x-user", "alice");
/// assert_eq!(opts.metadata.get("X-User"), Some("alice"));
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct CallOptions {
    /// The call's deadline, from when it starts. Default: the client's
    /// (5 s). The context's deadline, if sooner, wins.
    pub timeout: Option<Duration>,
    /// Call this `host:port` directly instead of looking the service up.
    /// Default: none (registry and selector).
    pub address: Option<String>,
    /// The request codec. Default: the client's (JSON).
    pub content_type: Option<ContentType>,
    /// Metadata sent as headers, over the context's. Default: empty.
    pub metadata: Metadata,
    /// The context the call is made for: its request id, deadline and
    /// metadata travel on. Default: none (a fresh request id).
    pub context: Option<Context>,
    /// The retry policy of this call. Default: the client's.
    pub retry: Option<RetryPolicy>,
    /// Filters on the nodes this call may go to, on top of the client's.
    /// Default: none.
    pub filters: Vec<Filter>,
    /// The token this call sends as `Authorization: Bearer`, over the
    /// client's. Default: none.
    pub token: Option<String>,
}

impl CallOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the deadline, from when the call starts.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Calls `address` (`host:port`) directly.
    #[must_use]
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// Sets the request codec.
    #[must_use]
    pub fn content_type(mut self, content_type: ContentType) -> Self {
        self.content_type = Some(content_type);
        self
    }

    /// Adds a metadata entry, sent as a header.
    #[must_use]
    pub fn metadata(mut self, key: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        self.metadata.insert(key, value);
        self
    }

    /// Sends `token` as `Authorization: Bearer <token>`.
    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Makes the call on behalf of `context`: same request id, a deadline
    /// no later than its, and its metadata.
    #[must_use]
    pub fn context(mut self, context: &Context) -> Self {
        self.context = Some(context.clone());
        self
    }
}

impl CallOptions {
    /// Sets the retry policy of this call.
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Adds a filter on the nodes this call may go to.
    #[must_use]
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filters.push(filter);
        self
    }
}

impl From<&Context> for CallOptions {
    fn from(context: &Context) -> Self {
        Self::new().context(context)
    }
}
