//! [`ClientBuilder`]: the registry, broker, selector, codec, deadline,
//! retries, filters and layers of a [`Client`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};

use super::{Client, DEFAULT_TIMEOUT, Inner, RetryPolicy, cache};
use crate::Backends;
use crate::codec::ContentType;
use crate::registry::Registry;
use crate::selector::{Cooldown, Filter, Random, Selector};
use crate::transport::{BoxError, DEFAULT_MAX_RESPONSE_SIZE, Stack, Transport};

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
    backends: Option<Backends>,
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
    identity: Option<crate::auth::Identity>,
    /// The TLS config calls use, when set.
    #[cfg(feature = "tls")]
    tls: Option<rustls::ClientConfig>,
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
            backends: None,
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
            identity: None,
            #[cfg(feature = "tls")]
            tls: None,
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
    /// connection level (the selector is wrapped in a
    /// [`Cooldown`](crate::selector::Cooldown)). Default: 5 s.
    #[must_use]
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// Sends `token` with every call and stream, as `Authorization: Bearer`
    /// (a call's [`CallOptions::token`](crate::client::CallOptions::token)
    /// wins). Default: none; a call made for a service's context carries
    /// the service's own identity.
    #[must_use]
    pub fn token(self, token: impl Into<String>) -> Self {
        self.identity(crate::auth::Identity::fixed("", token))
    }

    /// Calls services over HTTPS (and streams over WSS) with `tls`: the
    /// roots servers are verified against, and a certificate of its own
    /// for mutual TLS. Every call of this client uses TLS. Set it before
    /// any [`layer`](Self::layer), which wraps the transport as it is.
    ///
    /// # Errors
    /// 500 if the TLS config cannot be made from `tls`.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: &crate::tls::ClientTls) -> crate::Result<Self> {
        if self.transport.is_some() {
            tracing::error!(
                "ClientBuilder::tls after layer: the layers keep a plain transport; set tls first"
            );
        }
        self.tls = Some(tls.config()?);
        Ok(self)
    }

    /// Sends `identity`'s current token with every call and stream.
    #[must_use]
    pub fn identity(mut self, identity: crate::auth::Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// The backends to use: the registry to find services in and the
    /// broker to publish through (a [`registry`](Self::registry) or
    /// [`broker`](Self::broker) set alone wins over the bundle's). Default:
    /// [`Backends::default`], chosen from the environment.
    #[must_use]
    pub fn backends(mut self, backends: &Backends) -> Self {
        self.backends = Some(backends.clone());
        self
    }

    /// The registry to find services in, over the
    /// [`backends`](Self::backends)'. Default: that of [`Backends::default`].
    #[must_use]
    pub fn registry(mut self, registry: Arc<dyn Registry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The broker to publish through, over the
    /// [`backends`](Self::backends)'. Default: that of
    /// [`Backends::default`].
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
        #[cfg(feature = "tls")]
        let tls = self.tls.clone();
        let base = self.transport.unwrap_or_else(|| {
            #[cfg(feature = "tls")]
            if let Some(config) = tls {
                return crate::transport::tls_transport(config);
            }
            crate::transport::hyper_transport()
        });
        let layered = layer
            .layer(base)
            .map_response(|r: Response<ResBody>| r.map(Body::new))
            .map_err(Into::into);
        self.transport = Some(BoxCloneSyncService::new(layered));
        self
    }

    /// Whether calls use TLS.
    fn tls_on(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// The client.
    pub fn build(self) -> Client {
        let scheme = if self.tls_on() { "https" } else { "http" };
        #[cfg(feature = "tls")]
        let transport = match (self.transport, self.tls) {
            (Some(layered), _) => Stack::Layered(layered),
            (None, Some(config)) => Stack::tls(config),
            (None, None) => Stack::direct(),
        };
        #[cfg(not(feature = "tls"))]
        let transport = match self.transport {
            Some(layered) => Stack::Layered(layered),
            None => Stack::direct(),
        };
        let backends = self.backends.unwrap_or_default();
        Client {
            inner: Arc::new(Inner {
                scheme,
                transport,
                broker: self.broker.unwrap_or_else(|| backends.broker().clone()),
                lookup: cache::Lookup::new(
                    self.registry.unwrap_or_else(|| backends.registry().clone()),
                ),
                selector: Arc::new(Cooldown::new(
                    self.selector.unwrap_or_else(|| Arc::new(Random::new())),
                    self.cooldown,
                )),
                content_type: self.content_type,
                timeout: self.timeout,
                max_response_size: self.max_response_size,
                retry: self.retry,
                filters: self.filters,
                cooldown: self.cooldown,
                identity: self.identity,
            }),
        }
    }
}
