//! The server: a service's endpoints over HTTP, on axum.
//!
//! One port serves HTTP/1.1 and h2c. `POST /` with a `Micro-Endpoint`
//! header is an RPC (see docs/wire.md); `GET /` with a WebSocket upgrade opens
//! a stream (see [`stream`](crate::stream)); `GET /health`, `/health/live` and
//! `/health/ready` report health. Everything else is a 404 or 405 in the
//! error JSON.
//!
//! Users reach the server through [`Service`](crate::Service); this module
//! holds the [`Handler`] trait that `#[service]` implements, and health
//! checks.

pub(crate) mod conn;
#[cfg(feature = "protobuf")]
mod grpc;
mod handler;
pub(crate) mod health;
mod openapi;
pub(crate) mod rpc;
pub(crate) mod streams;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::registry::Endpoint;
use crate::{Error, Result};

use crate::stream::StreamKind;

pub use conn::{DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT};
pub use futures_util::future::BoxFuture;
pub use handler::{Call, Handler, Reply};
pub use health::HealthCheck;
pub use streams::StreamCall;

/// The default limit on streams open at once: 10,000.
pub const DEFAULT_MAX_STREAMS: usize = 10_000;

/// The default limit on a request body: 4 MiB.
pub const DEFAULT_MAX_BODY_SIZE: usize = 4 * 1024 * 1024;

/// What every request of one running server shares. Immutable once the
/// server starts, but for `ready`.
pub(crate) struct Shared {
    /// The service name: the `id` of the errors the server produces.
    pub(crate) name: String,
    /// `Type.Method` -> where it is served.
    pub(crate) endpoints: HashMap<String, Route>,
    /// `<package>.<Service>/<Method>` -> where it is served, for gRPC.
    #[cfg(feature = "protobuf")]
    pub(crate) grpc: HashMap<String, Route>,
    /// The protobuf descriptors that server reflection answers with.
    #[cfg(feature = "protobuf")]
    pub(crate) descriptors: grpc::Descriptors,
    /// Handler names, to tell an unknown type from an unknown method.
    pub(crate) handlers: Vec<String>,
    /// `GET /schemas`: the endpoints with their JSON Schemas, as JSON.
    pub(crate) schemas: bytes::Bytes,
    /// `GET /openapi.json`: the OpenAPI document of the calls.
    pub(crate) openapi: bytes::Bytes,
    /// Largest request body accepted, in bytes.
    pub(crate) max_body_size: usize,
    /// How long a body may take to arrive when the request sets no
    /// deadline.
    pub(crate) body_timeout: std::time::Duration,
    /// False from the moment a graceful stop begins: readiness reports
    /// down and new requests are refused with 503 so callers retry
    /// elsewhere, while requests already running finish.
    pub(crate) ready: AtomicBool,
    pub(crate) checks: Vec<HealthCheck>,
    /// Takes the events that arrive on this port.
    pub(crate) broker: Arc<dyn crate::broker::Broker>,
    /// The open streams, which a graceful stop waits for and then ends.
    pub(crate) streams: Arc<streams::Streams>,
    /// The service's store and events, for handlers' contexts.
    pub(crate) platform: Option<Arc<crate::context::Platform>>,
    /// Who may call, when auth is on.
    pub(crate) guard: Option<crate::auth::Guard>,
    /// The service's metrics, when they are on.
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.name)
            .field("handlers", &self.handlers)
            .field("max_body_size", &self.max_body_size)
            .finish_non_exhaustive()
    }
}

/// Where an endpoint is served: the handler, the endpoint's index in the
/// handler's list, its name, shared with every request's context, and
/// whether it is a stream.
#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) index: usize,
    pub(crate) name: Arc<str>,
    pub(crate) stream: Option<StreamKind>,
    /// The access rules its metadata declares.
    pub(crate) rules: Arc<[crate::auth::Rule]>,
    /// Its series, when the service's metrics are on.
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<crate::metrics::EndpointMetrics>,
}

/// A body of `content_type`.
fn reply(
    body: impl Into<axum::body::Body>,
    content_type: &'static str,
) -> axum::response::Response {
    let mut response = axum::response::Response::new(body.into());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

/// `GET /schemas`: the service's endpoints with the JSON Schemas of their
/// requests and responses, complete even where the registry record had to
/// leave them out.
async fn schemas(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
) -> axum::response::Response {
    reply(shared.schemas.clone(), "application/json")
}

/// `GET /openapi.json`: the OpenAPI 3.1 document of the service's calls.
async fn openapi_json(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
) -> axum::response::Response {
    reply(shared.openapi.clone(), "application/json")
}

/// `GET /metrics`: the service's metrics as Prometheus (OpenMetrics)
/// text; 404 when they are off or not built in.
async fn metrics(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
) -> axum::response::Response {
    #[cfg(feature = "metrics")]
    if let Some(m) = &shared.metrics {
        return reply(
            m.text(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        );
    }
    let err = Error::not_found(
        "no metrics here: build micro with its \"metrics\" feature, and leave Service::metrics on",
    )
    .with_id(shared.name.clone());
    crate::wire::error_response(&err)
}

/// The axum router of a server.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/",
            post(rpc::serve)
                .get(streams::serve)
                .fallback(rpc::method_not_allowed),
        )
        .route("/metrics", get(metrics))
        .route("/schemas", get(schemas))
        .route("/openapi.json", get(openapi_json))
        // `POST /Type.Method`: a call with its endpoint in the path, as
        // the OpenAPI document lists it.
        .route("/{endpoint}", post(rpc::serve))
        .route("/health", get(health::health))
        // `POST /<package>.<Service>/<Method>`: gRPC.
        .route("/{service}/{method}", post(grpc_or_not))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route(crate::auth::JWKS_PATH, get(jwks))
        .fallback(rpc::no_route)
        .with_state(shared)
}

/// A gRPC call, when gRPC is built in.
#[cfg(feature = "protobuf")]
use grpc::serve as grpc_or_not;

/// Without the `protobuf` feature, a path of two segments is no route.
#[cfg(not(feature = "protobuf"))]
async fn grpc_or_not(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    if req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
    {
        let err = Error::unsupported_media_type(
            "gRPC is not built into this service: build micro with its \"protobuf\" feature",
        )
        .or_id(&shared.name);
        return crate::wire::error_response(&err);
    }
    rpc::no_route(axum::extract::State(shared), req).await
}

/// `GET /.well-known/jwks.json`: the keys that verify this service's
/// tokens, when it issues them.
async fn jwks(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
) -> axum::response::Response {
    let doc = shared
        .guard
        .as_ref()
        .filter(|g| g.auth.issues())
        .and_then(|g| g.auth.jwks().ok());
    match doc {
        Some(doc) => {
            let mut r = axum::response::Response::new(axum::body::Body::from(doc.to_string()));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            r
        }
        None => crate::wire::error_response(
            &Error::not_found("this service issues no tokens, so it has no JWKS document")
                .or_id(&shared.name),
        ),
    }
}

/// How long the streams still open when the grace period ends get to send
/// their close frames.
const STREAM_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A layer the user put around the router.
pub(crate) type RouterLayer = Box<dyn FnOnce(Router) -> Router + Send>;

/// What a [`Server`] is made of; [`Service`](crate::Service) fills it in.
pub(crate) struct Config {
    /// The service name: the `id` of the errors the server produces.
    pub(crate) name: String,
    /// The service's version, for the OpenAPI document.
    pub(crate) version: String,
    /// Where to listen.
    pub(crate) address: String,
    pub(crate) handlers: Vec<Arc<dyn Handler>>,
    pub(crate) max_body_size: usize,
    pub(crate) body_timeout: Duration,
    pub(crate) timeouts: conn::Timeouts,
    pub(crate) max_streams: usize,
    pub(crate) stream_idle_timeout: Option<Duration>,
    pub(crate) checks: Vec<HealthCheck>,
    pub(crate) broker: Arc<dyn crate::broker::Broker>,
    pub(crate) platform: Option<Arc<crate::context::Platform>>,
    pub(crate) layers: Vec<RouterLayer>,
    /// Who may call, when auth is on.
    pub(crate) guard: Option<crate::auth::Guard>,
    /// TLS for every connection, when set.
    pub(crate) tls: conn::Tls,
    /// The service's metrics, served at `/metrics`, when on.
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Encoded protobuf `FileDescriptorSet`s, for gRPC server reflection.
    #[cfg(feature = "protobuf")]
    pub(crate) descriptors: Vec<bytes::Bytes>,
}

/// A running server: it binds, serves, and drains on a graceful stop.
/// Registration and subscriptions are the [`Service`](crate::Service)'s.
pub(crate) struct Server {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    /// The endpoints it serves, for the registry record.
    endpoints: Vec<Endpoint>,
    /// Set to true to close the listener and drain the connections.
    stop: watch::Sender<bool>,
    serving: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Checks the handlers, binds the address and starts serving.
    ///
    /// # Errors
    /// 500 if two handlers share a name or an endpoint, or the address
    /// cannot be bound.
    pub(crate) async fn start(config: Config) -> Result<Self> {
        let name = config.name;
        let mut endpoints = HashMap::new();
        #[cfg(feature = "protobuf")]
        let mut grpc = HashMap::new();
        let mut records = Vec::new();
        let mut handler_names = Vec::new();
        for handler in &config.handlers {
            let handler_name = handler.name().to_owned();
            if handler_names.contains(&handler_name) {
                return Err(Error::internal(format!(
                    "two handlers are named {handler_name}: handler names must be unique in a service"
                ))
                .with_id(name));
            }
            for (index, endpoint) in handler.endpoints().into_iter().enumerate() {
                let route = Route {
                    handler: handler.clone(),
                    index,
                    name: Arc::from(endpoint.name.as_str()),
                    stream: StreamKind::of(&endpoint),
                    rules: crate::auth::declared(&name, &endpoint).into(),
                    #[cfg(feature = "metrics")]
                    metrics: config.metrics.as_ref().map(|m| m.endpoint(&endpoint.name)),
                };
                // A protobuf service's endpoints are gRPC methods too, and
                // their record says where.
                #[cfg(feature = "protobuf")]
                let endpoint = match grpc::path_of(&endpoint) {
                    Some(path) => {
                        let record = format!("/{path}");
                        grpc.insert(path, route.clone());
                        endpoint.with_metadata(crate::codec::GRPC_METADATA, record)
                    }
                    None => endpoint,
                };
                if endpoints.insert(endpoint.name.clone(), route).is_some() {
                    return Err(Error::internal(format!(
                        "endpoint {} is defined twice",
                        endpoint.name
                    ))
                    .with_id(name));
                }
                records.push(endpoint);
            }
            handler_names.push(handler_name);
        }
        #[cfg(feature = "protobuf")]
        let descriptors =
            grpc::Descriptors::new(&config.descriptors).map_err(|e| e.with_id(name.clone()))?;
        let listener = TcpListener::bind(&config.address).await.map_err(|e| {
            Error::internal(format!("listening on {}: {e}", config.address)).with_id(name.clone())
        })?;
        let local_addr = listener.local_addr()?;
        let schemas = serde_json::to_vec(&serde_json::json!({
            "service": name,
            "endpoints": records,
        }))
        .unwrap_or_default()
        .into();
        let openapi = serde_json::to_vec(&openapi::document(&name, &config.version, &records))
            .unwrap_or_default()
            .into();
        let shared = Arc::new(Shared {
            name,
            schemas,
            openapi,
            endpoints,
            #[cfg(feature = "protobuf")]
            grpc,
            #[cfg(feature = "protobuf")]
            descriptors,
            handlers: handler_names,
            max_body_size: config.max_body_size,
            body_timeout: config.body_timeout,
            ready: AtomicBool::new(true),
            checks: config.checks,
            broker: config.broker,
            guard: config.guard,
            platform: config.platform,
            #[cfg(feature = "metrics")]
            metrics: config.metrics,
            streams: Arc::new(streams::Streams::new(
                config.max_streams,
                config.stream_idle_timeout,
            )),
        });
        let mut router = router(shared.clone());
        for layer in config.layers {
            router = layer(router);
        }
        let (stop, stop_rx) = watch::channel(false);
        let serving = tokio::spawn(conn::serve(
            listener,
            router,
            shared.clone(),
            config.timeouts,
            stop_rx,
            config.tls,
        ));
        Ok(Self {
            local_addr,
            shared,
            endpoints: records,
            stop,
            serving,
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub(crate) fn name(&self) -> &str {
        &self.shared.name
    }

    /// The endpoints served, for the registry record.
    pub(crate) fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The first step of a graceful stop: readiness reports down, new
    /// requests get 503, stream handlers see `Context::stopping`.
    pub(crate) fn begin_stop(&self) {
        self.shared.ready.store(false, Ordering::SeqCst);
        self.shared.streams.stopping();
    }

    /// Stops at once, when the service could not start.
    pub(crate) fn abort(self) {
        let _ = self.stop.send(true);
    }

    /// Resolves if the server stops by itself, which it should not: with
    /// the error that says why.
    pub(crate) async fn failed(&mut self) -> Error {
        server_exit(&self.shared.name, (&mut self.serving).await)
    }

    /// Closes the listener and waits up to `grace` for in-flight requests
    /// and open streams; then drops the requests and ends the streams
    /// with 503.
    ///
    /// # Errors
    /// 500 if the server had already failed.
    pub(crate) async fn drain(self, grace: Duration) -> Result<()> {
        let name = self.shared.name.clone();
        let _ = self.stop.send(true);
        let mut serving = self.serving;
        // Upgraded connections are not the HTTP server's to wait for: open
        // streams are counted apart and get the same grace period.
        let streams = self.shared.streams.clone();
        let drain = async {
            let result = (&mut serving).await;
            streams.idle().await;
            result
        };
        match tokio::time::timeout(grace, drain).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(result) => Err(server_exit(&name, result)),
            Err(_) => {
                tracing::warn!(
                    service = %name,
                    grace_period = ?grace,
                    streams = streams.len(),
                    "grace period over, dropping in-flight requests and ending open streams"
                );
                // Each open stream ends with 503, so its client hears why:
                // a WebSocket stream in its close frame, a gRPC stream in
                // its trailers, which need the connection still served.
                streams.close_all();
                let _ = tokio::time::timeout(STREAM_CLOSE_TIMEOUT, streams.idle()).await;
                serving.abort();
                Ok(())
            }
        }
    }
}

fn server_exit(
    name: &str,
    result: std::result::Result<std::io::Result<()>, tokio::task::JoinError>,
) -> Error {
    let detail = match result {
        Ok(Ok(())) => "server stopped unexpectedly".to_owned(),
        Ok(Err(e)) => format!("server failed: {e}"),
        Err(e) => format!("server task failed: {e}"),
    };
    Error::internal(detail).with_id(name.to_owned())
}
