//! The service: a name, its handlers, a server and a registration, and
//! its defaults. [`Service`] and [`ServiceHandle`] are also at the crate
//! root.

mod handle;
mod leader;
mod registration;
mod start;

pub use handle::{ServiceHandle, shutdown_signal};
pub use leader::{DEFAULT_LEADER_TTL, LEADER_PREFIX, Leading, leader_key};

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::Route as AxumRoute;
use tokio::task::JoinHandle;
use tower::{Layer, Service as TowerService};

use crate::Backends;
use crate::registry::{self, RegisterOptions, Registry};
use crate::server::{self, DEFAULT_MAX_BODY_SIZE, Handler, HealthCheck, RouterLayer, Server};
use crate::{Error, Result};

/// The default grace period for in-flight requests on a graceful stop.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);

/// The default listen address: every interface, an ephemeral port.
pub const DEFAULT_ADDRESS: &str = "0.0.0.0:0";

/// The default interval between re-registrations: 30 s.
pub const DEFAULT_REGISTER_INTERVAL: Duration = Duration::from_secs(30);

/// The default TTL of a registration: 90 s, three missed intervals.
pub const DEFAULT_REGISTER_TTL: Duration = Duration::from_secs(90);

/// A micro service: handlers served over HTTP under a name, registered so
/// that clients find it.
///
/// ```no_run
/// # struct Helloworld;
/// # impl micro::server::Handler for Helloworld {
/// #     fn name(&self) -> &str { "Helloworld" }
/// #     fn endpoints(&self) -> Vec<micro::registry::Endpoint> { vec![] }
/// #     fn call(self: std::sync::Arc<Self>, _: usize, _: micro::server::Call)
/// #         -> micro::server::BoxFuture<'static, micro::Result<micro::server::Reply>> { unimplemented!() }
/// # }
/// #[tokio::main]
/// async fn main() -> micro::Result<()> {
///     micro::Service::new("helloworld")
///         .address("127.0.0.1:8080")
///         .handle(Helloworld)
///         .run()
///         .await
/// }
/// ```
pub struct Service {
    name: String,
    version: String,
    address: Option<String>,
    advertise: Option<String>,
    metadata: BTreeMap<String, String>,
    handlers: Vec<Arc<dyn Handler>>,
    register_interval: Duration,
    register_ttl: Duration,
    metrics: bool,
    grace_period: Duration,
    shutdown_delay: Duration,
    max_body_size: usize,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    body_timeout: Duration,
    max_streams: usize,
    stream_idle_timeout: Option<Duration>,
    backends: Option<Backends>,
    store: Option<Arc<dyn crate::store::Store>>,
    events: Option<Arc<dyn crate::events::Events>>,
    registry: Option<Arc<dyn Registry>>,
    broker: Option<Arc<dyn crate::broker::Broker>>,
    subscribers: Vec<crate::broker::Subscriber>,
    consumers: Vec<crate::events::Consumer>,
    leader_tasks: Vec<leader::LeaderTask>,
    sync: Option<Arc<dyn crate::sync::Locks>>,
    layers: Vec<RouterLayer>,
    checks: Vec<HealthCheck>,
    auth: Option<crate::auth::Auth>,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::ServerTls>,
    /// Encoded `FileDescriptorSet`s for gRPC server reflection.
    #[cfg(feature = "protobuf")]
    descriptors: Vec<bytes::Bytes>,
    /// The config `config(..)` was given: micro's settings and the auth
    /// rules.
    settings: Option<crate::config::Config>,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("address", &self.address)
            .field("advertise", &self.advertise)
            .field("register_interval", &self.register_interval)
            .field("register_ttl", &self.register_ttl)
            .field("metadata", &self.metadata)
            .field(
                "handlers",
                &self.handlers.iter().map(|h| h.name()).collect::<Vec<_>>(),
            )
            .field("grace_period", &self.grace_period)
            .field("shutdown_delay", &self.shutdown_delay)
            .field("max_body_size", &self.max_body_size)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("max_streams", &self.max_streams)
            .field("stream_idle_timeout", &self.stream_idle_timeout)
            .field("checks", &self.checks)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// A service called `name`, version `latest`, on an ephemeral port.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: "latest".to_owned(),
            address: None,
            advertise: None,
            metadata: BTreeMap::new(),
            handlers: Vec::new(),
            register_interval: DEFAULT_REGISTER_INTERVAL,
            register_ttl: DEFAULT_REGISTER_TTL,
            metrics: true,
            grace_period: DEFAULT_GRACE_PERIOD,
            shutdown_delay: Duration::ZERO,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            header_read_timeout: server::DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: server::DEFAULT_IDLE_TIMEOUT,
            body_timeout: server::DEFAULT_BODY_TIMEOUT,
            max_streams: server::DEFAULT_MAX_STREAMS,
            stream_idle_timeout: None,
            #[cfg(feature = "protobuf")]
            descriptors: Vec::new(),
            backends: None,
            store: None,
            events: None,
            registry: None,
            broker: None,
            subscribers: Vec::new(),
            consumers: Vec::new(),
            leader_tasks: Vec::new(),
            sync: None,
            layers: Vec::new(),
            checks: Vec::new(),
            auth: None,
            #[cfg(feature = "tls")]
            tls: None,
            settings: None,
        }
    }

    /// The version it registers with. Default: `latest`.
    #[must_use]
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// The address to listen on, `host:port`. Default: `0.0.0.0:0`, an
    /// ephemeral port on every interface. `MICRO_SERVER_ADDRESS`, when set,
    /// wins over both, so one binary can be placed without a rebuild.
    #[must_use]
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// The address other hosts reach this node at, `host:port`, when it
    /// differs from the listen address (behind NAT, in a container).
    /// Default: the listen address, where an unspecified host (`0.0.0.0`,
    /// `::`) becomes this host's first non-loopback address.
    /// `MICRO_SERVER_ADVERTISE`, when set, wins.
    #[must_use]
    pub fn advertise(mut self, address: impl Into<String>) -> Self {
        self.advertise = Some(address.into());
        self
    }

    /// How often the service renews its registration. Default: 30 s.
    #[must_use]
    pub fn register_interval(mut self, interval: Duration) -> Self {
        self.register_interval = interval;
        self
    }

    /// How long a registration lasts unless renewed: a node that died
    /// without deregistering disappears after it. Default: 90 s.
    #[must_use]
    pub fn register_ttl(mut self, ttl: Duration) -> Self {
        self.register_ttl = ttl;
        self
    }

    /// Whether the service keeps Prometheus metrics and serves them at
    /// `GET /metrics` on its port (with micro's `metrics` feature):
    /// `micro_requests_total{endpoint,code}`,
    /// `micro_request_duration_seconds{endpoint}`,
    /// `micro_streams_open{endpoint}`, `micro_streams_total{endpoint}`,
    /// `micro_messages_total{topic,outcome}` and
    /// `micro_events_total{topic,outcome}`, each labelled with the
    /// service's name. Default: on, when the feature is built in.
    #[must_use]
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
    }

    /// Adds service metadata, published in the registry.
    #[must_use]
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Serves the endpoints of `handler`: a type with `#[service]` on its
    /// impl block, or any [`Handler`].
    #[must_use]
    pub fn handle(mut self, handler: impl Handler) -> Self {
        self.handlers.push(Arc::new(handler));
        self
    }

    /// How long a graceful stop waits for in-flight requests before it
    /// drops them. Default: 30 s.
    #[must_use]
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = grace;
        self
    }

    /// How long a graceful stop keeps listening after it has deregistered
    /// and turned not-ready, before it closes the listener: time for
    /// load balancers and caches to notice. Requests that arrive meanwhile
    /// get 503, which clients retry on another node. Default: zero.
    #[must_use]
    pub fn shutdown_delay(mut self, delay: Duration) -> Self {
        self.shutdown_delay = delay;
        self
    }

    /// Adds protobuf descriptors, an encoded `FileDescriptorSet`, for gRPC
    /// server reflection: with them, tools such as grpcurl and Postman can
    /// describe the service's methods and messages. prost-build writes
    /// one with `file_descriptor_set_path`, protox returns one, and
    /// `protoc --descriptor_set_out --include_imports` writes one. Without
    /// any, reflection still lists the services. May be called more than
    /// once.
    ///
    /// ```no_run
    /// # let set: &'static [u8] = &[];
    /// // const SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/greeter.bin"));
    /// let service = micro::Service::new("greeter").file_descriptor_set(set);
    /// ```
    ///
    /// A set that does not decode makes [`start`](Self::start) fail.
    #[cfg(feature = "protobuf")]
    #[must_use]
    pub fn file_descriptor_set(mut self, set: impl Into<bytes::Bytes>) -> Self {
        self.descriptors.push(set.into());
        self
    }

    /// The largest request body accepted; larger ones get 413. Default:
    /// 4 MiB.
    #[must_use]
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// How long a caller may take to send a request's head (its request
    /// line and headers), counted from its first byte; a connection that
    /// takes longer is closed. Default: 30 s.
    #[must_use]
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// How long a keep-alive connection may stay open with no request in
    /// flight and none arriving; then it is closed. Default: 60 s.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long a request body (of a call or an event) may take to arrive
    /// when the request carries no `Timeout`; past it the request gets 408.
    /// A request's own deadline, when it sets one, bounds the body instead.
    /// Default: 60 s.
    #[must_use]
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// The most streams open at once; past it an upgrade gets 503, which
    /// clients retry on another node. Default: 10,000.
    #[must_use]
    pub fn max_streams(mut self, streams: usize) -> Self {
        self.max_streams = streams;
        self
    }

    /// Ends a stream on which no message has arrived from the client for
    /// this long, with 408. Default: none; a stream lives as long as its
    /// deadline, if it has one.
    #[must_use]
    pub fn stream_idle_timeout(mut self, timeout: Duration) -> Self {
        self.stream_idle_timeout = Some(timeout);
        self
    }

    /// micro's own settings from `config`: the backends
    /// ([`Backends::from_config`]: `micro.registry`, `micro.store`,
    /// `micro.store_address`, …), the listen address
    /// (`micro.server_address`) and the advertised one
    /// (`micro.server_advertise`); a `MICRO_*` variable set in the
    /// environment wins over its key, and backends set with
    /// [`backends`](Self::backends) win over the config's.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> micro::Result<()> {
    /// let config = micro::config::Config::builder()
    ///     .set_default("micro.registry", "memory")
    ///     .set_default("micro.server_address", "127.0.0.1:0")
    ///     .load()
    ///     .await?;
    /// let service = micro::Service::new("greeter").config(&config);
    /// # let _ = service; Ok(()) }
    /// ```
    #[must_use]
    pub fn config(mut self, config: &crate::config::Config) -> Self {
        if self.backends.is_none() {
            self.backends = Some(Backends::from_config(config));
        }
        if let Some(address) = config.micro_var("MICRO_SERVER_ADDRESS") {
            self.address = Some(address);
        }
        if let Some(advertise) = config.micro_var("MICRO_SERVER_ADVERTISE") {
            self.advertise = Some(advertise);
        }
        self.settings = Some(config.clone());
        self
    }

    /// Serves HTTPS (and WSS) with `tls`, mutual TLS if it names a client
    /// CA. Default: `MICRO_SERVER_TLS_CERT` and `MICRO_SERVER_TLS_KEY`
    /// (and `MICRO_SERVER_TLS_CLIENT_CA`) when set, else plain HTTP.
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls(mut self, tls: crate::tls::ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Turns auth on with `auth`: every call, stream, event and delivery
    /// is checked against its rules (and the endpoints' declared ones),
    /// 401 without a valid token, 403 when the rules refuse. An issuing
    /// auth also serves its JWKS document and the `Auth` endpoints.
    /// Default: `MICRO_AUTH` (`jwt` turns it on; see [`crate::auth`]), off
    /// when unset.
    #[must_use]
    pub fn auth(mut self, auth: crate::auth::Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// The backends to run on: the registry to register in and the broker
    /// to subscribe through (a [`registry`](Self::registry) or
    /// [`broker`](Self::broker) set alone wins over the bundle's). Default:
    /// [`Backends::default`], chosen from the environment.
    #[must_use]
    pub fn backends(mut self, backends: &Backends) -> Self {
        self.backends = Some(backends.clone());
        self
    }

    /// The registry to register in, over the [`backends`](Self::backends)'.
    /// Default: that of [`Backends::default`].
    #[must_use]
    pub fn registry(mut self, registry: Arc<dyn Registry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The broker the service subscribes through, over the
    /// [`backends`](Self::backends)'. Default: that of
    /// [`Backends::default`].
    #[must_use]
    pub fn broker(mut self, broker: Arc<dyn crate::broker::Broker>) -> Self {
        self.broker = Some(broker);
        self
    }

    /// The store the service's handlers keep their records in, over the
    /// [`backends`](Self::backends)'; each handler sees the service's own
    /// scope through [`Context::store`](crate::Context::store). Default:
    /// that of [`Backends::default`] (memory unless `MICRO_STORE` says).
    #[must_use]
    pub fn store(mut self, store: Arc<dyn crate::store::Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The events backend the service's handlers publish to and consume
    /// from, over the [`backends`](Self::backends)'; handlers reach it
    /// through [`Context::events`](crate::Context::events), with the
    /// service's name as their default group. Default: that of
    /// [`Backends::default`] (memory unless `MICRO_EVENTS` says).
    #[must_use]
    pub fn events(mut self, events: Arc<dyn crate::events::Events>) -> Self {
        self.events = Some(events);
        self
    }

    /// The lock backend the service's elections run on, over the
    /// [`backends`](Self::backends)'. Default: that of [`Backends::default`]
    /// (memory unless `MICRO_SYNC` says).
    #[must_use]
    pub fn sync(mut self, sync: Arc<dyn crate::sync::Locks>) -> Self {
        self.sync = Some(sync);
        self
    }

    /// Runs `task` only while this node leads `election`: every node of
    /// the service that declares it campaigns, one leads at a time, and its
    /// node shows `leader.<election>` (the lead's fencing token) in the
    /// registry. The task starts when the lead is won and is dropped when
    /// the lead is lost; a graceful stop resigns, so another node takes
    /// over at once. A lead lasts [`DEFAULT_LEADER_TTL`] past the last
    /// renewal of a node that stopped renewing (it crashed, say).
    ///
    /// ```no_run
    /// # async fn run() -> micro::Result<()> {
    /// micro::Service::new("billing")
    ///     .leader_task("invoicing", |leading| async move {
    ///         loop {
    ///             // Send this hour's invoices, on one node of the service;
    ///             // `leading.fence()` guards the writes.
    ///             tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    ///         }
    ///     })
    ///     .run()
    ///     .await
    /// # }
    /// ```
    #[must_use]
    pub fn leader_task<F, Fut>(self, election: impl Into<String>, task: F) -> Self
    where
        F: Fn(Leading) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.leader_task_with_ttl(election, DEFAULT_LEADER_TTL, task)
    }

    /// As [`leader_task`](Self::leader_task), with the lead's time to live:
    /// a shorter one hands over sooner after a crash, at the cost of more
    /// renewals (one every third of it).
    #[must_use]
    pub fn leader_task_with_ttl<F, Fut>(
        mut self,
        election: impl Into<String>,
        ttl: Duration,
        task: F,
    ) -> Self
    where
        F: Fn(Leading) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        (self.leader_tasks).push(leader::LeaderTask::new(election.into(), ttl, task));
        self
    }

    /// Runs `consumer` on the service's events while it runs: from its
    /// start (which fails if the consumer cannot consume) to its stop,
    /// which waits for the delivery being handled.
    #[must_use]
    pub fn consume(mut self, consumer: crate::events::Consumer) -> Self {
        self.consumers.push(consumer);
        self
    }

    /// Subscribes `handler` to `topic` when the service starts, besides
    /// the `#[subscribe]` functions and methods.
    #[must_use]
    pub fn subscribe(
        mut self,
        topic: impl Into<String>,
        options: crate::broker::SubscribeOptions,
        handler: crate::broker::MessageHandler,
    ) -> Self {
        self.subscribers
            .push(crate::broker::Subscriber::new(topic, options, handler));
        self
    }

    /// Adds a readiness check, reported by `/health` and `/health/ready`.
    #[must_use]
    pub fn health_check<F, Fut>(mut self, name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.checks.push(HealthCheck::new(name, check));
        self
    }

    /// Wraps the server in a tower layer, such as tower-http's
    /// `TraceLayer`, `TimeoutLayer` or `CompressionLayer`. As with axum's
    /// `Router::layer`, a layer added later wraps the ones before it.
    #[must_use]
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<AxumRoute> + Clone + Send + Sync + 'static,
        L::Service: TowerService<Request> + Clone + Send + Sync + 'static,
        <L::Service as TowerService<Request>>::Response: IntoResponse + 'static,
        <L::Service as TowerService<Request>>::Error: Into<std::convert::Infallible> + 'static,
        <L::Service as TowerService<Request>>::Future: Send + 'static,
    {
        self.layers
            .push(Box::new(move |router| router.layer(layer)));
        self
    }

    /// Starts, serves until SIGINT or SIGTERM, then stops gracefully:
    /// deregisters, refuses new requests, lets in-flight ones finish within
    /// the grace period, and returns `Ok`.
    ///
    /// # Errors
    /// As [`start`](Self::start), or if the server fails while running.
    pub async fn run(self) -> Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// As [`run`](Self::run), but stops when `signal` completes.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub async fn run_until(self, signal: impl Future<Output = ()> + Send) -> Result<()> {
        let mut handle = self.start().await?;
        tokio::select! {
            () = signal => {}
            err = handle.server.failed() => return Err(err),
        }
        handle.stop().await
    }
}
