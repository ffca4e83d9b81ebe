//! The per-request context: request id, deadline and metadata.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;

use crate::metadata::Metadata;

/// What a handler knows about the request it serves, and what a caller
/// passes on: the request id, the deadline and the metadata.
///
/// A handler that takes a `Context` and hands it to the calls it makes (with
/// [`CallOptions::context`](crate::client::CallOptions::context)) carries the
/// caller's deadline and request id, and its metadata, to every downstream
/// service.
///
/// ```
/// use std::time::Duration;
/// use micro::Context;
///
/// let ctx = Context::new()
///     .with_timeout(Duration::from_secs(2))
///     .with_metadata("x-user", "alice");
/// assert_eq!(ctx.metadata().get("X-User"), Some("alice"));
/// assert!(ctx.remaining().unwrap() <= Duration::from_secs(2));
/// assert!(!ctx.id().is_empty());
/// ```
#[derive(Clone, Debug)]
pub struct Context {
    /// Always non-empty visible ASCII, so that `id()` can borrow it as text;
    /// kept as a header value so that passing it on copies nothing.
    id: HeaderValue,
    deadline: Option<Instant>,
    metadata: Metadata,
    endpoint: Option<Arc<str>>,
    /// Becomes true when the service serving this stream begins a
    /// graceful stop; only streams' contexts have one.
    stopping: Option<tokio::sync::watch::Receiver<bool>>,
    /// The serving service's store and events, on a server-side context.
    platform: Option<Arc<Platform>>,
    /// Who made the request, when the service's auth is on.
    credentials: Option<Arc<crate::auth::Credentials>>,
    /// The trace the request belongs to, and the span serving it.
    trace: Option<crate::trace::Trace>,
}

/// The parts a service hands its handlers: its scope of the store and its
/// events, with its name as their default group.
#[derive(Debug)]
pub(crate) struct Platform {
    pub(crate) store: crate::store::Scoped,
    pub(crate) events: crate::events::Topics,
    /// The service's own token, which calls made for its requests carry.
    pub(crate) identity: Option<crate::auth::Identity>,
}

impl Default for Context {
    fn default() -> Self {
        Self::new()
    }
}

impl Context {
    /// A new root context with a fresh request id, no deadline and no
    /// metadata.
    pub fn new() -> Self {
        Self {
            id: crate::wire::new_id_header(),
            deadline: None,
            metadata: Metadata::new(),
            endpoint: None,
            stopping: None,
            platform: None,
            credentials: None,
            trace: None,
        }
    }

    /// `id` must be non-empty visible ASCII ([`crate::wire::valid_id`]).
    pub(crate) fn from_parts(
        id: HeaderValue,
        deadline: Option<Instant>,
        metadata: Metadata,
        endpoint: Option<Arc<str>>,
    ) -> Self {
        Self {
            id,
            deadline,
            metadata,
            endpoint,
            stopping: None,
            platform: None,
            credentials: None,
            trace: None,
        }
    }

    /// This context, in `trace`.
    pub(crate) fn with_trace(mut self, trace: crate::trace::Trace) -> Self {
        self.trace = Some(trace);
        self
    }

    /// The trace this request belongs to and the span serving it (W3C
    /// Trace Context): on a server-side context, the caller's trace
    /// continued or a new one; `None` on a context made with
    /// [`new`](Self::new). Calls made for this context carry it on.
    pub fn trace(&self) -> Option<crate::trace::Trace> {
        self.trace
    }

    /// This context, with who made the request.
    pub(crate) fn with_credentials(
        mut self,
        credentials: Option<crate::auth::Credentials>,
    ) -> Self {
        self.credentials = credentials.map(Arc::new);
        self
    }

    /// The account of the request's token, when the serving service's
    /// auth is on and the request came with a valid one.
    pub fn account(&self) -> Option<&crate::auth::Account> {
        self.credentials.as_deref().and_then(|c| c.account())
    }

    /// The original caller, when a service called on its behalf (its
    /// token came as `Micro-Caller`, beside the service's own).
    pub fn caller(&self) -> Option<&crate::auth::Account> {
        self.credentials.as_deref().and_then(|c| c.caller())
    }

    /// Who made the request, as the serving service's auth found it.
    pub(crate) fn credentials(&self) -> Option<&crate::auth::Credentials> {
        self.credentials.as_deref()
    }

    /// The serving service's own token, for the calls made for this
    /// request.
    pub(crate) fn identity_token(&self) -> Option<Arc<str>> {
        self.platform
            .as_deref()
            .and_then(|p| p.identity.as_ref())
            .and_then(crate::auth::Identity::token)
    }

    /// This context, with the serving service's store and events.
    pub(crate) fn with_platform(mut self, platform: Option<Arc<Platform>>) -> Self {
        self.platform = platform;
        self
    }

    /// The store of the service serving this request, in the service's own
    /// scope (its name): what a handler keeps its state in. Reach data
    /// other services share with [`Scoped::scope`](crate::store::Scoped::scope).
    ///
    /// # Errors
    /// 500 on a context that is not a service's: one made with
    /// [`Context::new`], or a subscriber's.
    pub fn store(&self) -> crate::Result<crate::store::Scoped> {
        let platform = self.platform.as_deref();
        platform.map(|p| p.store.clone()).ok_or_else(|| {
            crate::Error::internal(
                "this context has no store: only a context a service gives its handlers does",
            )
        })
    }

    /// The events of the service serving this request: publish durable
    /// events, and consume them with the service's name as the default
    /// group ([`Topics::options`](crate::events::Topics::options)).
    ///
    /// # Errors
    /// 500 on a context that is not a service's, as for
    /// [`store`](Self::store).
    pub fn events(&self) -> crate::Result<crate::events::Topics> {
        let platform = self.platform.as_deref();
        platform.map(|p| p.events.clone()).ok_or_else(|| {
            crate::Error::internal(
                "this context has no events: only a context a service gives its handlers does",
            )
        })
    }

    /// This context, told when the service begins a graceful stop.
    pub(crate) fn with_stopping(mut self, stopping: tokio::sync::watch::Receiver<bool>) -> Self {
        self.stopping = Some(stopping);
        self
    }

    /// The request id (`Micro-Id`), shared by every call made on behalf of
    /// one original request.
    pub fn id(&self) -> &str {
        self.id.to_str().unwrap_or_default()
    }

    /// The request id as the header value a call sends on.
    pub(crate) fn id_header(&self) -> &HeaderValue {
        &self.id
    }

    /// The deadline, if the caller set one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The time left before the deadline; `Some(ZERO)` once it has passed.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Whether the deadline has passed.
    pub fn is_expired(&self) -> bool {
        self.deadline.is_some_and(|d| d <= Instant::now())
    }

    /// The request metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The request metadata, mutable: what is added here travels on to the
    /// calls made with this context.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// The endpoint being served (`Helloworld.Greeting`), on a server-side
    /// context.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// Completes when the service serving this stream begins a graceful
    /// stop. A long-lived stream handler can wait on it beside its work and
    /// return `Ok` to end the stream cleanly, instead of being ended with
    /// 503 when the grace period runs out. On any other context (a
    /// request's, or one a caller made) it never completes.
    ///
    /// ```
    /// use micro::{Context, Result, Stream};
    ///
    /// async fn ticker(ctx: Context, mut stream: Stream<(), u64>) -> Result<()> {
    ///     let mut n = 0;
    ///     loop {
    ///         tokio::select! {
    ///             () = ctx.stopping() => return Ok(()),
    ///             () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {
    ///                 stream.send(n).await?;
    ///                 n += 1;
    ///             }
    ///         }
    ///     }
    /// }
    /// ```
    pub async fn stopping(&self) {
        let Some(stopping) = &self.stopping else {
            return std::future::pending().await;
        };
        let mut stopping = stopping.clone();
        if stopping.wait_for(|stopping| *stopping).await.is_err() {
            // The service is gone without saying so: never tell.
            std::future::pending::<()>().await;
        }
    }

    /// This context with a deadline `timeout` from now, or the current one
    /// if that is sooner.
    #[must_use]
    pub fn with_timeout(self, timeout: Duration) -> Self {
        let deadline = Instant::now() + timeout;
        self.with_deadline(deadline)
    }

    /// This context with `deadline`, or the current one if that is sooner.
    #[must_use]
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(match self.deadline {
            Some(d) => d.min(deadline),
            None => deadline,
        });
        self
    }

    /// This context with `key` set to `value` in its metadata.
    #[must_use]
    pub fn with_metadata(mut self, key: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        self.metadata.insert(key, value);
        self
    }

    /// This context with request id `id`.
    ///
    /// A request id travels as a header, so it is visible ASCII: any other
    /// byte is percent-encoded (`café` becomes `caf%C3%A9`), and an empty
    /// id leaves the current one.
    ///
    /// ```
    /// let ctx = micro::Context::new().with_id("order-42");
    /// assert_eq!(ctx.id(), "order-42");
    /// assert_eq!(ctx.with_id("caf\u{e9}").id(), "caf%C3%A9");
    /// ```
    #[must_use]
    pub fn with_id(mut self, id: impl AsRef<str>) -> Self {
        use std::fmt::Write as _;

        let id = id.as_ref();
        if id.is_empty() {
            return self;
        }
        let mut text = String::with_capacity(id.len());
        for b in id.bytes() {
            if b.is_ascii_graphic() || b == b' ' {
                text.push(char::from(b));
            } else {
                let _ = write!(text, "%{b:02X}");
            }
        }
        self.id = HeaderValue::from_str(&text).expect("visible ASCII is a valid header value");
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_only_shrinks() {
        let ctx = Context::new().with_timeout(Duration::from_millis(50));
        let first = ctx.deadline().unwrap();
        let ctx = ctx.with_timeout(Duration::from_secs(60));
        assert_eq!(ctx.deadline(), Some(first));
        let ctx = ctx.with_timeout(Duration::ZERO);
        assert!(ctx.is_expired());
        assert_eq!(ctx.remaining(), Some(Duration::ZERO));
    }

    #[test]
    fn ids_are_unique_v4_uuids() {
        let ids: std::collections::HashSet<String> =
            (0..10_000).map(|_| crate::wire::new_id()).collect();
        assert_eq!(ids.len(), 10_000);
        let id = uuid::Uuid::parse_str(ids.iter().next().unwrap()).unwrap();
        assert_eq!(id.get_version_num(), 4);
        assert_ne!(Context::new().id(), Context::new().id());
    }
}
