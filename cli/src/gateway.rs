//! `micro gateway`: the HTTP API, the dashboard and the MCP server of
//! micro-gateway in front of every service the registry knows.

use micro::auth::{Auth, JWKS_PATH};

use crate::output::Failure;

/// How the gateway serves.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where to listen. Any address but loopback needs --auth or --open.
    #[arg(
        long,
        env = "MICRO_GATEWAY_ADDRESS",
        default_value = "127.0.0.1:8080",
        value_name = "HOST:PORT"
    )]
    address: String,
    /// Require a bearer token on every request, verified against this
    /// issuer (`host:port` or a URL; its JWKS document is read). Default:
    /// `MICRO_AUTH_ADDRESS` when `MICRO_AUTH=jwt`.
    #[arg(long, value_name = "ISSUER")]
    auth: Option<String>,
    /// Serve an address other than loopback without auth: anyone who
    /// reaches it may call every service.
    #[arg(long)]
    open: bool,
    /// Serve only the MCP server, on stdin and stdout (for an MCP client
    /// that starts the gateway itself); calls carry `MICRO_TOKEN`.
    #[arg(long)]
    stdio: bool,
}

/// The JWKS URL of an issuer given as `host:port` or a URL.
fn jwks_url(issuer: &str) -> String {
    let base = issuer.trim_end_matches('/');
    if base.contains("://") {
        format!("{base}{JWKS_PATH}")
    } else {
        format!("http://{base}{JWKS_PATH}")
    }
}

pub(crate) async fn run(backends: &micro::Backends, args: &Args) -> Result<(), Failure> {
    let issuer = args.auth.clone().or_else(|| {
        (std::env::var("MICRO_AUTH").as_deref() == Ok("jwt"))
            .then(|| std::env::var("MICRO_AUTH_ADDRESS").ok())
            .flatten()
    });
    let mut builder = micro_gateway::Gateway::builder()
        .backends(backends)
        .allow_open(args.open);
    if let Some(issuer) = &issuer {
        builder = builder.auth(Auth::verifier(jwks_url(issuer)).build()?);
    }
    let gateway = builder.build();
    if args.stdio {
        return Ok(gateway.serve_stdio().await?);
    }
    let listener = gateway.bind(&args.address).await?;
    let address = listener
        .local_addr()
        .map_err(|e| Failure::Micro(micro::Error::internal(e.to_string())))?;
    eprintln!(
        "micro gateway on http://{address}: the dashboard at /, calls at POST /<service>/<Type.Method>, MCP at /mcp{}",
        if issuer.is_some() {
            "; bearer tokens required"
        } else {
            ""
        }
    );
    gateway
        .serve(listener, micro::service::shutdown_signal())
        .await?;
    Ok(())
}
