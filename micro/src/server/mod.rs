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
mod handler;
mod health;
pub(crate) mod rpc;
pub(crate) mod streams;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::routing::{get, post};

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
    /// Handler names, to tell an unknown type from an unknown method.
    pub(crate) handlers: Vec<String>,
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
        .route("/health", get(health::health))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .fallback(rpc::no_route)
        .with_state(shared)
}
