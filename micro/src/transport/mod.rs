//! The one HTTP client of the crate: pooled keep-alive connections
//! ([`pool`]), or the user's tower layers around hyper's pooled client, one
//! request and its whole reply, and the error a reply carries. The
//! client's calls and streams and the HTTP broker's deliveries all go
//! through it.

mod pool;

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::future::{BoxFuture, Either};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use crate::Error;
use crate::wire::MICRO_ERROR;
use pool::{Lease, Pool};

/// A boxed error, as tower layers produce.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// The HTTP service a client sends its requests through; layers wrap it.
pub type Transport = BoxCloneSyncService<Request<Body>, Response<Body>, BoxError>;

/// How requests leave: straight into the crate's connection pool, or
/// through the user's layers around hyper's pooled client. The direct path
/// saves boxing a service and two bodies per call when there are no
/// layers.
#[derive(Clone)]
pub(crate) enum Stack {
    Direct(Arc<Pool<HttpConnector>>),
    /// The pool over TLS.
    #[cfg(feature = "tls")]
    Tls(Arc<Pool<hyper_rustls::HttpsConnector<HttpConnector>>>),
    Layered(Transport),
}

/// The default limit on a reply body: 4 MiB.
pub const DEFAULT_MAX_RESPONSE_SIZE: usize = 4 * 1024 * 1024;

/// The `User-Agent` of every request micro sends.
pub(crate) static USER_AGENT_VALUE: HeaderValue =
    HeaderValue::from_static(concat!("micro-rs/", env!("CARGO_PKG_VERSION")));

impl Stack {
    /// The connection pool, with no layers.
    pub(crate) fn direct() -> Self {
        Stack::Direct(Arc::new(Pool::new(connector())))
    }

    /// The connection pool over TLS with `config`, HTTPS only.
    #[cfg(feature = "tls")]
    pub(crate) fn tls(config: rustls::ClientConfig) -> Self {
        Stack::Tls(Arc::new(Pool::new(tls_connector(config))))
    }

    /// Sends one request; the reply's body is still to be read.
    ///
    /// Not an `async fn`: the request is handed on before this returns
    /// (to an idle connection, or into a boxed future that connects), so
    /// the future the caller holds, and every future around it, does not
    /// carry the request's parts.
    pub(crate) fn send(
        &self,
        parts: http::request::Parts,
        body: Bytes,
    ) -> impl Future<Output = Result<Reply, BoxError>> + Send + 'static {
        let sent: BoxFuture<'static, Result<Reply, BoxError>> = match self {
            Stack::Direct(pool) => {
                let sent = pool.send(parts, body);
                return Either::Left(async move {
                    let (response, lease) = sent.await?;
                    Ok(Reply::Direct(response, lease))
                });
            }
            #[cfg(feature = "tls")]
            Stack::Tls(pool) => {
                let sent = pool.send(parts, body);
                Box::pin(async move {
                    let (response, lease) = sent.await?;
                    Ok(Reply::Direct(response, lease))
                })
            }
            Stack::Layered(transport) => {
                let request = Request::from_parts(parts, Body::from(body));
                let sent = transport.clone().oneshot(request);
                Box::pin(async move { Ok(Reply::Layered(sent.await?)) })
            }
        };
        Either::Right(sent)
    }

    /// Sends one request and reads its whole reply, refusing more than
    /// `limit` bytes; `service` and `address` name the peer in errors.
    pub(crate) fn exchange<'a>(
        &self,
        parts: http::request::Parts,
        body: Bytes,
        limit: usize,
        service: &'a str,
        address: &'a str,
    ) -> impl Future<Output = Result<(http::response::Parts, Bytes), Failure>> + Send + 'a {
        let sent = self.send(parts, body);
        async move {
            let reply = sent.await.map_err(|e| {
                Failure::Transport(Error::unavailable(format!(
                    "calling {service} at {address}: {}",
                    chain(&*e)
                )))
            })?;
            reply.read(limit, service, address).await
        }
    }
}

/// A reply whose body is still to be read, from either path; a pooled
/// one with the connection it came on.
pub(crate) enum Reply {
    Direct(Response<Incoming>, Lease),
    Layered(Response<Body>),
}

impl Reply {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Reply::Direct(r, _) => r.status(),
            Reply::Layered(r) => r.status(),
        }
    }

    pub(crate) fn headers(&self) -> &http::HeaderMap {
        match self {
            Reply::Direct(r, _) => r.headers(),
            Reply::Layered(r) => r.headers(),
        }
    }

    /// The whole reply, refusing a body over `limit` bytes.
    pub(crate) fn read<'a>(
        self,
        limit: usize,
        service: &'a str,
        address: &'a str,
    ) -> impl Future<Output = Result<(http::response::Parts, Bytes), Failure>> + Send + 'a {
        match self {
            Reply::Direct(r, lease) => {
                let read = read_reply(r, limit, service, address);
                Either::Left(async move {
                    let whole = read.await?;
                    // Read to its end: the connection takes another.
                    lease.release();
                    Ok(whole)
                })
            }
            Reply::Layered(r) => Either::Right(read_reply(r, limit, service, address)),
        }
    }

    /// The connection, once the reply switched protocols.
    pub(crate) async fn upgrade(self) -> hyper::Result<hyper::upgrade::Upgraded> {
        match self {
            // The lease is held until the connection is handed over.
            Reply::Direct(r, _lease) => hyper::upgrade::on(r).await,
            Reply::Layered(r) => hyper::upgrade::on(r).await,
        }
    }
}

/// The error a non-2xx reply carries: its error JSON (header or body), or
/// a description of what came back.
pub(crate) fn reply_error(
    parts: &http::response::Parts,
    bytes: &Bytes,
    service: &str,
    address: &str,
) -> Error {
    parts
        .headers
        .get(&MICRO_ERROR)
        .and_then(|v| Error::from_json(v.as_bytes()))
        .or_else(|| Error::from_json(bytes))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(bytes);
            let detail = match text.trim() {
                "" => format!("{service} at {address} answered {}", parts.status),
                t => t.chars().take(512).collect(),
            };
            Error::new("", parts.status.as_u16(), detail)
        })
}

/// Reads a whole reply body, refusing more than `limit` bytes. The
/// response is split before the future is made, so that the future holds
/// its head once.
fn read_reply<'a, B>(
    response: Response<B>,
    limit: usize,
    service: &'a str,
    address: &'a str,
) -> impl Future<Output = Result<(http::response::Parts, Bytes), Failure>> + Send + 'a
where
    B: http_body::Body<Data = Bytes> + Send + 'a,
    B::Error: Into<BoxError>,
{
    let (parts, body) = response.into_parts();
    let collecting = Limited::new(body, limit).collect();
    async move {
        match collecting.await {
            Ok(c) => Ok((parts, c.to_bytes())),
            Err(e) if e.is::<LengthLimitError>() => {
                Err(Failure::Reply(Error::bad_gateway(format!(
                    "reply from {service} at {address} is larger than the limit of {limit} bytes"
                ))))
            }
            Err(e) => Err(Failure::Transport(Error::unavailable(format!(
                "reading reply from {service} at {address}: {}",
                chain(&*e)
            )))),
        }
    }
}

/// Why one attempt failed: before reaching a handler (the node is marked)
/// or with a reply.
pub(crate) enum Failure {
    Transport(Error),
    Reply(Error),
}

impl Failure {
    pub(crate) fn into_error(self) -> Error {
        match self {
            Failure::Transport(e) | Failure::Reply(e) => e,
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Reply(e)
    }
}

/// An error and its sources, joined with `": "`, without repeats.
pub(crate) fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The TCP connector every client uses: `TCP_NODELAY`, a 5 s connect
/// timeout, keepalive.
fn connector() -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    connector.set_keepalive(Some(Duration::from_secs(60)));
    connector
}

/// A pooled keep-alive client on `connector`.
fn pooled<C, B>(connector: C) -> HyperClient<C, B>
where
    C: hyper_util::client::legacy::connect::Connect + Clone,
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    HyperClient::builder(TokioExecutor::new())
        .pool_idle_timeout(pool::IDLE_TIMEOUT)
        .build(connector)
}

/// hyper's pooled keep-alive HTTP/1.1 client with `TCP_NODELAY`, for a
/// backend that streams bodies of its own type.
#[cfg(feature = "etcd")]
pub(crate) fn hyper_client<B>() -> HyperClient<HttpConnector, B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    pooled(connector())
}

/// The TLS connector on top of [`connector`], with `config`, HTTPS only.
#[cfg(feature = "tls")]
fn tls_connector(config: rustls::ClientConfig) -> hyper_rustls::HttpsConnector<HttpConnector> {
    let mut http = connector();
    http.enforce_http(false);
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .wrap_connector(http)
}

/// `client` as a tower service, for layers to wrap.
fn as_transport<C>(client: HyperClient<C, Body>) -> Transport
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let service = tower::service_fn(move |req: Request<Body>| {
        let client = client.clone();
        async move {
            let response = client.request(req).await?;
            Ok::<_, BoxError>(response.map(Body::new))
        }
    });
    BoxCloneSyncService::new(service)
}

/// hyper's pooled client over TLS as a tower service, for layers to wrap.
#[cfg(feature = "tls")]
pub(crate) fn tls_transport(config: rustls::ClientConfig) -> Transport {
    as_transport(pooled(tls_connector(config)))
}

/// hyper's pooled client as a tower service, for layers to wrap.
pub(crate) fn hyper_transport() -> Transport {
    as_transport(pooled(connector()))
}
