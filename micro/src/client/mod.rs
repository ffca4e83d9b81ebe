//! The client: calls endpoints of other services.
//!
//! A [`Client`] finds a node of the service through the registry and the
//! selector (or takes the address it is given), encodes the request with the
//! chosen codec, POSTs it as docs/wire.md describes over a pooled keep-alive HTTP
//! connection, and decodes the reply or the error JSON. `#[service]`
//! generates a typed client on top of it; [`Client::call`] is the untyped
//! way in.
//!
//! The HTTP transport is a tower service, so tower and tower-http layers
//! wrap it unchanged with [`ClientBuilder::layer`].

mod attempt;
mod builder;
mod cache;
mod options;
mod pick;
mod publisher;
mod retry;
pub(crate) mod stream;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::transport::{BoxError, DEFAULT_MAX_RESPONSE_SIZE, Transport};
pub use builder::{ClientBuilder, DEFAULT_COOLDOWN};
pub use options::CallOptions;
pub use publisher::Publisher;
pub use retry::{Backoff, RetryPolicy};
pub use stream::ClientStream;

use crate::codec::{CodecError, ContentType};
use crate::registry::Registry;
use crate::selector::{Filter, Selector};
use crate::transport::Stack;
use crate::{Error, Result};
#[doc(hidden)]
pub use attempt::ServiceName;
use attempt::Target;

/// The default deadline of a call: 5 s, as in Go Micro.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Calls services. Cheap to clone: clones share the connection pool, the
/// registry and the selector.
///
/// ```no_run
/// # #[derive(serde::Serialize)] struct Request { name: String }
/// # #[derive(serde::Deserialize)] struct Response { message: String }
/// # async fn f() -> micro::Result<()> {
/// use micro::client::CallOptions;
///
/// let client = micro::Client::new();
/// let rsp: Response = client
///     .call("helloworld", "Helloworld.Greeting", &Request { name: "alice".into() }, CallOptions::new())
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    /// `http`, or `https` with TLS.
    scheme: &'static str,
    transport: Stack,
    broker: Arc<dyn crate::broker::Broker>,
    lookup: Arc<cache::Lookup>,
    selector: Arc<dyn Selector>,
    content_type: ContentType,
    timeout: Duration,
    max_response_size: usize,
    retry: RetryPolicy,
    filters: Vec<Filter>,
    cooldown: Duration,
    /// The token every call sends, unless the call names one.
    identity: Option<crate::auth::Identity>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("registry", self.inner.lookup.registry())
            .field("broker", &self.inner.broker)
            .field("selector", &self.inner.selector)
            .field("content_type", &self.inner.content_type)
            .field("timeout", &self.inner.timeout)
            .field("max_response_size", &self.inner.max_response_size)
            .field("retry", &self.inner.retry)
            .field("filters", &self.inner.filters)
            .field("cooldown", &self.inner.cooldown)
            .finish_non_exhaustive()
    }
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    /// A client with the defaults: the process's default registry, the
    /// random selector, JSON, a 5 s deadline.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder to choose the registry, selector, codec, deadline and
    /// layers.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// The registry this client looks services up in.
    pub fn registry(&self) -> &Arc<dyn Registry> {
        self.inner.lookup.registry()
    }

    /// The broker this client publishes through.
    pub fn broker(&self) -> &Arc<dyn crate::broker::Broker> {
        &self.inner.broker
    }

    /// Publishes `value` to `topic` through the client's broker, encoded
    /// with the client's codec.
    ///
    /// The [`Published`](crate::broker::Published) report says how many
    /// subscribers took the event (where the broker can tell), so that
    /// "nobody was listening" is visible: `delivered == Some(0)`.
    ///
    /// # Errors
    /// 400 for an invalid topic; the subscribers' errors where the broker
    /// reports them (the first failure's code); 503 if the broker cannot be
    /// reached.
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        value: &T,
    ) -> Result<crate::broker::Published> {
        self.publish_with(topic, value, CallOptions::new()).await
    }

    /// As [`publish`](Self::publish), with options: `content_type`,
    /// `metadata` (sent with the message), and `context` (whose metadata
    /// travels too).
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub async fn publish_with<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        value: &T,
        options: CallOptions,
    ) -> Result<crate::broker::Published> {
        let content_type = options.content_type.unwrap_or(self.inner.content_type);
        let mut message = crate::broker::Message::encode(topic, value, content_type)?;
        if let Some(ctx) = &options.context {
            message.metadata = ctx.metadata().clone();
            // The trace goes on, with the span serving the context as the
            // parent (not the one it came with).
            if let Some(trace) = ctx.trace() {
                message.metadata.insert("traceparent", trace.traceparent());
            }
        }
        message.metadata.extend_from(&options.metadata);
        if let Some(token) = self.own_token(&options)
            && message.metadata.get("authorization").is_none()
        {
            message
                .metadata
                .insert("authorization", format!("Bearer {token}"));
        }
        self.inner
            .broker
            .publish(message)
            .await
            .map_err(Error::from)
    }

    /// Calls `endpoint` (`Type.Method`) of `service` with `request` and
    /// decodes the reply.
    ///
    /// A call that fails before a handler could have run it (the node is
    /// unreachable, or answers 502, 503 or 504) is retried on another node,
    /// as the [`RetryPolicy`] says, within the one deadline.
    ///
    /// # Errors
    /// The service's error as it sent it; or 404 when the registry has no
    /// node of the service, 503 when the registry or no node can be
    /// reached, 408 when the deadline passes, 500 when the
    /// reply does not decode into `Rsp`.
    pub async fn call<Req, Rsp>(
        &self,
        service: &str,
        endpoint: &str,
        request: &Req,
        options: CallOptions,
    ) -> Result<Rsp>
    where
        Req: Serialize + ?Sized,
        Rsp: DeserializeOwned,
    {
        self.call_target(&Target::new(service, endpoint)?, request, &options)
            .await
    }

    /// [`call`](Self::call) to a target already made. The options are
    /// borrowed all the way down, so that no layer's future carries a copy.
    pub(crate) async fn call_target<Req, Rsp>(
        &self,
        target: &Target<'_>,
        request: &Req,
        options: &CallOptions,
    ) -> Result<Rsp>
    where
        Req: Serialize + ?Sized,
        Rsp: DeserializeOwned,
    {
        let service = target.service;
        let content_type = options.content_type.unwrap_or(self.inner.content_type);
        let body = content_type
            .encode(request)
            .map_err(|e| encode_error(e, service))?;
        let (reply_type, body) = self.raw_target(target, content_type, body, options).await?;
        reply_type
            .decode(&body)
            .map_err(|e| decode_error(e, target))
    }

    /// [`call_target`](Self::call_target) with the codecs chosen by the
    /// caller: `encode` makes the request with `content_type`, `decode`
    /// reads the reply with the reply's own. (The serde path stays apart:
    /// the closures would grow every typed call's future.)
    async fn call_encoded<Rsp>(
        &self,
        target: &Target<'_>,
        content_type: ContentType,
        encode: impl FnOnce(ContentType) -> std::result::Result<Bytes, CodecError>,
        decode: impl FnOnce(ContentType, &[u8]) -> std::result::Result<Rsp, CodecError>,
        options: &CallOptions,
    ) -> Result<Rsp> {
        let body = encode(content_type).map_err(|e| encode_error(e, target.service))?;
        let (reply_type, body) = self.raw_target(target, content_type, body, options).await?;
        decode(reply_type, &body).map_err(|e| decode_error(e, target))
    }

    /// Calls `endpoint` of `service` with an encoded body; returns the
    /// reply's content type and body.
    ///
    /// # Errors
    /// As [`call`](Self::call), but for decoding.
    pub async fn call_raw(
        &self,
        service: &str,
        endpoint: &str,
        content_type: ContentType,
        body: Bytes,
        options: CallOptions,
    ) -> Result<(ContentType, Bytes)> {
        self.raw_target(
            &Target::new(service, endpoint)?,
            content_type,
            body,
            &options,
        )
        .await
    }

    async fn raw_target(
        &self,
        target: &Target<'_>,
        content_type: ContentType,
        body: Bytes,
        options: &CallOptions,
    ) -> Result<(ContentType, Bytes)> {
        let timeout = options.timeout.unwrap_or(self.inner.timeout);
        let started = Instant::now();
        let mut deadline = started + timeout;
        if let Some(parent) = options.context.as_ref().and_then(|c| c.deadline()) {
            deadline = deadline.min(parent);
        }
        let attempt = attempt::Attempt::Call { body };
        match self
            .attempts(target, content_type, &attempt, options, (started, deadline))
            .await?
        {
            attempt::Outcome::Reply(content_type, body) => Ok((content_type, body)),
            attempt::Outcome::Socket(..) => unreachable!("a call yields a reply"),
        }
    }
}

/// The error for a request that does not encode: a value
/// that cannot be represented is this side's fault (500); a codec its type
/// does not have is the caller's choice (415).
fn encode_error(e: CodecError, service: &str) -> Error {
    match e {
        CodecError::Encode { .. } => Error::internal(e.to_string()).with_source(e),
        other => Error::from(other),
    }
    .with_id(service.to_owned())
}

/// The error for a reply that does not decode.
fn decode_error(e: CodecError, target: &Target<'_>) -> Error {
    Error::internal(format!(
        "reply from {} {}: {e}",
        target.service, target.endpoint
    ))
    .with_id(target.service.to_owned())
    .with_source(e)
}

/// `Client::call` for the typed clients of a `#[service(protobuf)]`: the
/// request encoded by `encode` with the call's codec (protobuf unless the
/// options name another), the reply decoded by `decode` with its own.
#[doc(hidden)]
pub async fn typed_call_encoded<Rsp>(
    client: &Client,
    service: &ServiceName,
    endpoint: &'static str,
    encode: impl FnOnce(ContentType) -> std::result::Result<Bytes, CodecError>,
    decode: impl FnOnce(ContentType, &[u8]) -> std::result::Result<Rsp, CodecError>,
    options: &CallOptions,
) -> Result<Rsp> {
    let content_type = options.content_type.unwrap_or(ContentType::Protobuf);
    client
        .call_encoded(
            &service.target(endpoint)?,
            content_type,
            encode,
            decode,
            options,
        )
        .await
}

/// `Client::call` for the typed clients `#[service]` generates: the
/// service's header value is made once per client, the endpoint's never.
#[doc(hidden)]
pub async fn typed_call<Req, Rsp>(
    client: &Client,
    service: &ServiceName,
    endpoint: &'static str,
    request: &Req,
    options: &CallOptions,
) -> Result<Rsp>
where
    Req: Serialize + ?Sized,
    Rsp: DeserializeOwned,
{
    client
        .call_target(&service.target(endpoint)?, request, options)
        .await
}
