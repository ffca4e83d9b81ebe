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

mod cache;
mod options;
mod publisher;
mod retry;
pub(crate) mod stream;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Request, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};

pub use crate::transport::{BoxError, DEFAULT_MAX_RESPONSE_SIZE, Transport};
pub use options::CallOptions;
pub use publisher::Publisher;
pub use retry::{Backoff, RetryPolicy};
pub use stream::ClientStream;

use crate::codec::ContentType;
use crate::context::new_id;
use crate::registry::{Node, Registry, default_registry};
use crate::selector::{Filter, Random, Selector};
use crate::transport::{Failure, Stack, USER_AGENT_VALUE, reply_error};
use crate::wire::{MICRO_ENDPOINT, MICRO_ID, MICRO_SERVICE, TIMEOUT};
use crate::{Error, Result};

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
    /// Node address -> until when it is skipped, after a call to it failed
    /// at the connection level.
    failed: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
    /// The number of entries in `failed`, kept under its lock, so that the
    /// call path takes no lock while no node has failed.
    failing: std::sync::atomic::AtomicUsize,
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
        }
        message.metadata.extend_from(&options.metadata);
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
    /// The service's error as it sent it; or 503 when no node is found or
    /// no node can be reached, 408 when the deadline passes, 500 when the
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
        let content_type = options.content_type.unwrap_or(self.inner.content_type);
        let body = content_type
            .encode(request)
            .map_err(|e| Error::internal(e.to_string()).with_id(service.to_owned()))?;
        let (reply_type, body) = self
            .call_raw(service, endpoint, content_type, body, options)
            .await?;
        reply_type.decode(&body).map_err(|e| {
            Error::internal(format!("reply from {service} {endpoint}: {e}"))
                .with_id(service.to_owned())
                .with_source(e)
        })
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
        let timeout = options.timeout.unwrap_or(self.inner.timeout);
        let mut deadline = Instant::now() + timeout;
        if let Some(parent) = options.context.as_ref().and_then(|c| c.deadline()) {
            deadline = deadline.min(parent);
        }
        let attempt = Attempt::Call { body };
        match self
            .attempts(
                service,
                endpoint,
                content_type,
                &attempt,
                &options,
                deadline,
            )
            .await?
        {
            Outcome::Reply(content_type, body) => Ok((content_type, body)),
            Outcome::Socket(..) => unreachable!("a call yields a reply"),
        }
    }

    /// Sends `attempt` to a node of `service`, and again to another node
    /// while the retry policy says so, all within `deadline`.
    async fn attempts(
        &self,
        service: &str,
        endpoint: &str,
        content_type: ContentType,
        attempt: &Attempt,
        options: &CallOptions,
        deadline: Instant,
    ) -> Result<Outcome> {
        let policy = options.retry.as_ref().unwrap_or(&self.inner.retry);
        let budget = deadline.saturating_duration_since(Instant::now());
        let attempts = async {
            let mut tried: Vec<String> = Vec::new();
            let mut retry = 0;
            loop {
                let node = match &options.address {
                    Some(address) => Err(address.as_str()),
                    None => Ok(self.pick(service, &options.filters, &tried).await?),
                };
                let address = match &node {
                    Ok(picked) => picked.node().address.as_str(),
                    Err(address) => address,
                };
                let result = self
                    .send(
                        service,
                        endpoint,
                        address,
                        content_type,
                        attempt,
                        options,
                        deadline,
                    )
                    .await;
                let reached = !matches!(result, Err(Failure::Transport(_)));
                self.note_reached(address, reached);
                if let Ok(picked) = &node {
                    self.inner.selector.mark(service, picked.node(), reached);
                }
                let err = match result {
                    Ok(reply) => return Ok(reply),
                    Err(failure) => failure.into_error(),
                };
                let pause = policy.backoff.delay(retry + 1);
                let time_left = Instant::now() + pause < deadline;
                if retry >= policy.retries || !time_left || !policy.should_retry(&err) {
                    return Err(err);
                }
                retry += 1;
                tracing::debug!(service, endpoint, address, retry, error = %err, "retrying");
                tried.push(address.to_owned());
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
        };
        match tokio::time::timeout_at(deadline.into(), attempts).await {
            Ok(result) => result.map_err(|e| e.or_id(service)),
            Err(_) => {
                let what = match attempt {
                    Attempt::Call { .. } => "calling",
                    Attempt::Open { .. } => "opening a stream to",
                };
                Err(Error::timeout(format!(
                    "deadline exceeded {what} {service} {endpoint} after {budget:?}"
                ))
                .with_id(service.to_owned()))
            }
        }
    }

    /// Remembers whether `address` could be reached: a node that could not
    /// is skipped for the cool-down, so a dead node stops getting traffic
    /// after one failed call rather than when its registration expires.
    fn note_reached(&self, address: &str, reached: bool) {
        use std::sync::atomic::Ordering;
        if reached && self.inner.failing.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut failed = self.inner.failed.lock().unwrap_or_else(|e| e.into_inner());
        if reached {
            failed.remove(address);
        } else {
            failed.insert(address.to_owned(), Instant::now() + self.inner.cooldown);
        }
        self.inner.failing.store(failed.len(), Ordering::Relaxed);
    }

    /// A node of `service`, through the registry cache, the filters and the
    /// selector. Nodes this call already tried, and nodes cooling down after
    /// a failure, are taken only when there is nothing else.
    async fn pick(&self, service: &str, filters: &[Filter], tried: &[String]) -> Result<Picked> {
        let records = self.inner.lookup.get(service).await.map_err(Error::from)?;
        let none = || Error::unavailable(format!("service \"{service}\" has no nodes"));
        let unfiltered = filters.is_empty() && self.inner.filters.is_empty();
        if records.len() == 1
            && unfiltered
            && tried.is_empty()
            && self
                .inner
                .failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
        {
            // The common case borrows from the cached record: no copies.
            let nodes = &records[0].nodes;
            let chosen = self
                .inner
                .selector
                .select(service, nodes)
                .ok_or_else(none)?;
            let index = nodes
                .iter()
                .position(|n| std::ptr::eq(n, chosen))
                .ok_or_else(none)?;
            return Ok(Picked::Cached(records, index));
        }
        let mut nodes: Vec<Node> = if unfiltered {
            records
                .iter()
                .flat_map(|s| s.nodes.iter().cloned())
                .collect()
        } else {
            let all: Vec<Filter> = self.inner.filters.iter().chain(filters).cloned().collect();
            Filter::apply(&all, &records)
        };
        if nodes.is_empty() {
            return Err(Error::unavailable(format!(
                "no node of service \"{service}\" matches the call's filters"
            )));
        }
        let now = Instant::now();
        let cooling: Vec<String> = {
            let mut failed = self.inner.failed.lock().unwrap_or_else(|e| e.into_inner());
            failed.retain(|_, until| *until > now);
            self.inner
                .failing
                .store(failed.len(), std::sync::atomic::Ordering::Relaxed);
            nodes
                .iter()
                .filter(|n| failed.contains_key(&n.address))
                .map(|n| n.address.clone())
                .collect()
        };
        for avoid in [tried, cooling.as_slice()] {
            if avoid.is_empty() {
                continue;
            }
            let rest: Vec<Node> = nodes
                .iter()
                .filter(|n| !avoid.contains(&n.address))
                .cloned()
                .collect();
            if !rest.is_empty() {
                nodes = rest;
            }
        }
        let chosen = self
            .inner
            .selector
            .select(service, &nodes)
            .ok_or_else(none)?;
        Ok(Picked::Owned(chosen.clone()))
    }

    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        service: &str,
        endpoint: &str,
        address: &str,
        content_type: ContentType,
        attempt: &Attempt,
        options: &CallOptions,
        deadline: Instant,
    ) -> Result<Outcome, Failure> {
        let uri = format!("http://{address}/");
        let builder = match attempt {
            Attempt::Call { .. } => Request::post(uri.as_str()),
            Attempt::Open { .. } => Request::get(uri.as_str()),
        };
        let mut parts = builder
            .body(())
            .map_err(|e| {
                Failure::Reply(Error::bad_request(format!(
                    "invalid node address \"{address}\": {e}"
                )))
            })?
            .into_parts()
            .0;
        let headers = &mut parts.headers;
        match &options.context {
            Some(ctx) if !options.metadata.is_empty() => {
                let mut merged = ctx.metadata().clone();
                merged.extend_from(&options.metadata);
                merged.write_headers(headers);
            }
            Some(ctx) => ctx.metadata().write_headers(headers),
            None => options.metadata.write_headers(headers),
        }
        headers.insert(CONTENT_TYPE, content_type.header_value());
        headers.insert(USER_AGENT, USER_AGENT_VALUE.clone());
        let invalid = |what: &str, value: &str| {
            Failure::Reply(Error::bad_request(format!("invalid {what} \"{value}\"")))
        };
        headers.insert(
            MICRO_ENDPOINT.clone(),
            HeaderValue::from_str(endpoint).map_err(|_| invalid("endpoint", endpoint))?,
        );
        headers.insert(
            MICRO_SERVICE.clone(),
            HeaderValue::from_str(service).map_err(|_| invalid("service name", service))?,
        );
        let id = options
            .context
            .as_ref()
            .map_or_else(new_id, |c| c.id().to_owned());
        headers.insert(
            MICRO_ID.clone(),
            HeaderValue::from_str(&id).map_err(|_| invalid("request id", &id))?,
        );
        // A call's budget is what is left of its deadline; a stream's is
        // its own deadline, if it has one.
        let budget = match attempt {
            Attempt::Call { .. } => Some(deadline),
            Attempt::Open { deadline } => *deadline,
        };
        if let Some(budget) = budget {
            let remaining = budget.saturating_duration_since(Instant::now());
            headers.insert(
                TIMEOUT.clone(),
                HeaderValue::from(remaining.as_nanos() as u64),
            );
        }

        let body = match attempt {
            Attempt::Call { body } => body.clone(),
            Attempt::Open { .. } => {
                // Boxed: the upgrade's future is large, and inline it would
                // grow every call's future, which is moved on each call.
                let socket = Box::pin(self.upgrade(parts, service, address)).await?;
                return Ok(Outcome::Socket(Box::new(socket), address.to_owned()));
            }
        };
        let (parts, bytes) = self
            .inner
            .transport
            .exchange(parts, body, self.inner.max_response_size, service, address)
            .await?;
        let reply_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(ContentType::from_header)
            .unwrap_or(content_type);
        if parts.status == StatusCode::OK {
            return Ok(Outcome::Reply(reply_type, bytes));
        }
        Err(Failure::Reply(reply_error(
            &parts, &bytes, service, address,
        )))
    }
}

/// The node a call goes to: borrowed from the cached records, or a copy
/// when filters or failures narrowed the choice.
enum Picked {
    Cached(Arc<Vec<crate::registry::Service>>, usize),
    Owned(Node),
}

impl Picked {
    fn node(&self) -> &Node {
        match self {
            Picked::Cached(records, index) => &records[0].nodes[*index],
            Picked::Owned(node) => node,
        }
    }
}

/// What one attempt sends.
enum Attempt {
    /// A request with its encoded body.
    Call { body: Bytes },
    /// A stream's upgrade request; the stream's own deadline, if any.
    Open { deadline: Option<Instant> },
}

/// What one attempt got back.
enum Outcome {
    Reply(ContentType, Bytes),
    /// The stream's socket and the address of the node it reached.
    Socket(Box<crate::stream::Socket>, String),
}

/// Builds a [`Client`].
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use micro::codec::ContentType;
/// use micro::registry::MemoryRegistry;
/// use micro::selector::RoundRobin;
///
/// let client = micro::Client::builder()
///     .registry(Arc::new(MemoryRegistry::new()))
///     .selector(Arc::new(RoundRobin::new()))
///     .content_type(ContentType::MsgPack)
///     .timeout(Duration::from_secs(1))
///     .build();
/// ```
pub struct ClientBuilder {
    broker: Option<Arc<dyn crate::broker::Broker>>,
    /// The layered transport, once a layer is added; `None` means the
    /// direct path.
    transport: Option<Transport>,
    registry: Option<Arc<dyn Registry>>,
    selector: Option<Arc<dyn Selector>>,
    content_type: ContentType,
    timeout: Duration,
    max_response_size: usize,
    retry: RetryPolicy,
    filters: Vec<Filter>,
    cooldown: Duration,
}

/// The default time a node is skipped after a call to it failed at the
/// connection level: 5 s.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(5);

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("registry", &self.registry)
            .field("selector", &self.selector)
            .field("content_type", &self.content_type)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientBuilder {
    /// A builder with the defaults.
    pub fn new() -> Self {
        Self {
            broker: None,
            transport: None,
            registry: None,
            selector: None,
            content_type: ContentType::Json,
            timeout: DEFAULT_TIMEOUT,
            max_response_size: DEFAULT_MAX_RESPONSE_SIZE,
            retry: RetryPolicy::default(),
            filters: Vec::new(),
            cooldown: DEFAULT_COOLDOWN,
        }
    }

    /// When failed calls are retried. Default: [`RetryPolicy::default`],
    /// two retries of failures that happened before a handler ran.
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Adds a filter every call of this client applies, such as
    /// `Filter::version("v2")`. Default: none.
    #[must_use]
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filters.push(filter);
        self
    }

    /// How long a node is skipped after a call to it failed at the
    /// connection level. Default: 5 s.
    #[must_use]
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The registry to find services in. Default: [`default_registry`].
    #[must_use]
    pub fn registry(mut self, registry: Arc<dyn Registry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The broker to publish through. Default:
    /// [`broker::default_broker`](crate::broker::default_broker).
    #[must_use]
    pub fn broker(mut self, broker: Arc<dyn crate::broker::Broker>) -> Self {
        self.broker = Some(broker);
        self
    }

    /// The selector that picks a node. Default: [`Random`].
    #[must_use]
    pub fn selector(mut self, selector: Arc<dyn Selector>) -> Self {
        self.selector = Some(selector);
        self
    }

    /// The codec for requests. Default: JSON.
    #[must_use]
    pub fn content_type(mut self, content_type: ContentType) -> Self {
        self.content_type = content_type;
        self
    }

    /// The deadline of a call that sets none. Default: 5 s.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest reply body accepted. Default: 4 MiB.
    #[must_use]
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.max_response_size = bytes;
        self
    }

    /// Wraps the HTTP transport in a tower layer, such as tower-http's
    /// `SetRequestHeaderLayer` or `TraceLayer`. A layer added later wraps
    /// the ones added before it, so it sees each request first.
    #[must_use]
    pub fn layer<L, ResBody>(mut self, layer: L) -> Self
    where
        L: Layer<Transport>,
        L::Service:
            Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request<Body>>>::Error: Into<BoxError>,
        <L::Service as Service<Request<Body>>>::Future: Send + 'static,
        ResBody: http_body::Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        let base = self
            .transport
            .unwrap_or_else(crate::transport::hyper_transport);
        let layered = layer
            .layer(base)
            .map_response(|r: Response<ResBody>| r.map(Body::new))
            .map_err(Into::into);
        self.transport = Some(BoxCloneSyncService::new(layered));
        self
    }

    /// The client.
    pub fn build(self) -> Client {
        Client {
            inner: Arc::new(Inner {
                transport: match self.transport {
                    Some(layered) => Stack::Layered(layered),
                    None => Stack::direct(),
                },
                broker: self.broker.unwrap_or_else(crate::broker::default_broker),
                lookup: cache::Lookup::new(self.registry.unwrap_or_else(default_registry)),
                selector: self.selector.unwrap_or_else(|| Arc::new(Random::new())),
                content_type: self.content_type,
                timeout: self.timeout,
                max_response_size: self.max_response_size,
                retry: self.retry,
                filters: self.filters,
                cooldown: self.cooldown,
                failed: std::sync::Mutex::default(),
                failing: std::sync::atomic::AtomicUsize::new(0),
            }),
        }
    }
}

#[cfg(test)]
mod size_probe {
    #[test]
    fn call_future_size() {
        let c = super::Client::builder()
            .registry(std::sync::Arc::new(crate::registry::MemoryRegistry::new()))
            .build();
        let f = c.call_raw(
            "a",
            "b",
            crate::codec::ContentType::Json,
            bytes::Bytes::new(),
            super::CallOptions::new(),
        );
        println!("call_raw future: {} bytes", std::mem::size_of_val(&f));
    }
}
