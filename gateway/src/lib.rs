//! micro's gateway: one HTTP address in front of every service the
//! registry knows.
//!
//! - **An HTTP API**: `POST /<service>/<Endpoint>` calls the endpoint with
//!   the request's body (JSON or MessagePack) and answers with its reply, or
//!   with micro's error JSON and status as the service gave them. A
//!   WebSocket upgrade at the same path opens the endpoint's stream.
//! - **A dashboard** at `/`: the services, their versions, nodes and health,
//!   each endpoint with a call form built from its JSON Schema, and a live
//!   tail of a topic. One page of HTML and a little JavaScript, served from
//!   the binary.
//! - **An MCP server** at `/mcp` (streamable HTTP), or on stdin and stdout:
//!   each endpoint is a tool with its request's JSON Schema and its doc
//!   comment, so AI agents can call services.
//!
//! The gateway is a client of micro's public API: it finds services in the
//! registry the environment names (`MICRO_REGISTRY`, `MICRO_PROFILE`, …),
//! calls them with [`micro::Client`], and passes the caller's bearer token
//! and metadata on, so each service's own auth rules decide.
//!
//! Open on loopback. Bound to any other address it refuses to start unless
//! it verifies tokens ([`GatewayBuilder::auth`]: every request then needs a
//! valid bearer token) or is told to stay open
//! ([`GatewayBuilder::allow_open`]).
//!
//! ```no_run
//! # async fn run() -> micro::Result<()> {
//! let gateway = micro_gateway::Gateway::builder()
//!     .backends(&micro::Backends::from_env())
//!     .build();
//! let listener = gateway.bind("127.0.0.1:8080").await?;
//! gateway.serve(listener, micro::service::shutdown_signal()).await
//! # }
//! ```

mod api;
mod caller;
mod dashboard;
pub mod inspect;
mod mcp;
mod serve;

use std::net::SocketAddr;
use std::sync::Arc;

use micro::auth::{Account, Auth};
use micro::{Backends, Client, Error};

pub use mcp::tool_name;

/// The gateway: cheap to clone, every clone the same gateway.
#[derive(Clone, Debug)]
pub struct Gateway {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) backends: Backends,
    pub(crate) client: Client,
    /// Verifies callers' tokens, when the gateway requires them.
    pub(crate) auth: Option<Auth>,
    pub(crate) allow_open: bool,
    /// The MCP tools last listed: tool name to service and endpoint.
    pub(crate) tools: mcp::ToolNames,
}

/// Builds a [`Gateway`].
#[derive(Debug, Default)]
#[must_use]
pub struct GatewayBuilder {
    backends: Option<Backends>,
    auth: Option<Auth>,
    allow_open: bool,
}

impl GatewayBuilder {
    /// The registry to find services in and the broker to tail topics on.
    /// Default: [`Backends::default`] (the environment's).
    pub fn backends(mut self, backends: &Backends) -> Self {
        self.backends = Some(backends.clone());
        self
    }

    /// Requires a valid bearer token on every request, verified by `auth`
    /// (for example [`Auth::verifier`] with the issuer's JWKS URL): 401
    /// without one. The token is passed on to the service called.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Serves an address other than loopback without [`auth`](Self::auth):
    /// anyone who reaches it may call every service. Off by default.
    pub fn allow_open(mut self, open: bool) -> Self {
        self.allow_open = open;
        self
    }

    /// The gateway.
    pub fn build(self) -> Gateway {
        let backends = self.backends.unwrap_or_default();
        let client = Client::builder().backends(&backends).build();
        Gateway {
            shared: Arc::new(Shared {
                backends,
                client,
                auth: self.auth,
                allow_open: self.allow_open,
                tools: mcp::ToolNames::default(),
            }),
        }
    }
}

impl Gateway {
    /// A builder, on the environment's backends.
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::default()
    }

    /// The HTTP API, the dashboard and the MCP server as one router, for
    /// serving some other way than [`serve`](Self::serve). It does not
    /// check where it is bound: [`check_address`](Self::check_address) does.
    pub fn router(&self) -> axum::Router {
        api::router(self.shared.clone())
    }

    /// Whether this gateway may serve `address`: any loopback address, and
    /// any other only with auth or [`allow_open`](GatewayBuilder::allow_open).
    ///
    /// # Errors
    /// 403 naming what to set, for an address it must not serve open.
    pub fn check_address(&self, address: SocketAddr) -> micro::Result<()> {
        if address.ip().is_loopback() || self.shared.auth.is_some() || self.shared.allow_open {
            return Ok(());
        }
        Err(Error::forbidden(format!(
            "refusing to serve {address} without auth: anyone who reaches it could call every \
             service. Verify tokens (MICRO_AUTH=jwt and MICRO_AUTH_ADDRESS=<issuer>, or \
             GatewayBuilder::auth), bind a loopback address, or allow it open explicitly \
             (--open, GatewayBuilder::allow_open)"
        )))
    }

    /// Binds `address` after [`check_address`](Self::check_address).
    ///
    /// # Errors
    /// 400 for an address that does not parse, 403 as `check_address`
    /// says, 500 if it cannot be bound.
    pub async fn bind(&self, address: &str) -> micro::Result<tokio::net::TcpListener> {
        let parsed: SocketAddr = address.parse().map_err(|e| {
            Error::bad_request(format!(
                "gateway address \"{address}\" is not host:port: {e}"
            ))
        })?;
        self.check_address(parsed)?;
        tokio::net::TcpListener::bind(parsed)
            .await
            .map_err(|e| Error::internal(format!("binding the gateway to {address}: {e}")))
    }

    /// Serves `listener` until `shutdown` completes, then lets requests in
    /// flight finish (up to 10 s). A request's head must arrive within 30 s,
    /// on a new or a kept-alive connection alike, so slow or idle clients
    /// cannot hold connections open.
    ///
    /// # Errors
    /// 403 if the listener's address may not be served open.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> micro::Result<()> {
        let address = listener
            .local_addr()
            .map_err(|e| Error::internal(e.to_string()))?;
        self.check_address(address)?;
        let mcp_hosts = if address.ip().is_loopback() {
            None
        } else {
            // Tokens guard an address beyond loopback; rmcp's Host check
            // (against DNS rebinding on loopback) would refuse its names.
            Some(Vec::new())
        };
        let router = api::router_with(self.shared.clone(), mcp_hosts);
        serve::serve(listener, router, shutdown).await;
        Ok(())
    }

    /// Serves the MCP server on stdin and stdout until the client closes
    /// it. Calls carry `MICRO_TOKEN`, if set.
    ///
    /// # Errors
    /// 500 if the MCP session fails.
    pub async fn serve_stdio(&self) -> micro::Result<()> {
        mcp::serve_stdio(self.shared.clone()).await
    }
}

impl Shared {
    /// The account of a caller's token, when this gateway requires one.
    pub(crate) async fn admit(&self, token: Option<&str>) -> micro::Result<Option<Account>> {
        let Some(auth) = &self.auth else {
            return Ok(None);
        };
        let Some(token) = token else {
            return Err(Error::unauthorized(
                "this gateway needs a bearer token (Authorization: Bearer <token>, or ?token= \
                 for a WebSocket)",
            ));
        };
        auth.verify(token).await.map(Some)
    }
}
