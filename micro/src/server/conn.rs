//! Accepting and serving connections: HTTP/1.1 and h2c on one port, with
//! the limits a server on an open network needs.
//!
//! `axum::serve` gives hyper no timer, so a peer that sends half a request
//! line holds its connection for ever, and a graceful stop waits for it.
//! Here each connection is served by hyper-util's auto builder in a task
//! that also watches it:
//!
//! - **header read timeout**: from the first byte of a request until its
//!   head is complete; a connection that takes longer is dropped;
//! - **idle timeout**: a connection with no request in flight and no
//!   byte of a new one is closed gracefully after it;
//! - **graceful stop**: the listener closes, idle connections and those
//!   that have not sent a complete request are closed at once, and the
//!   rest finish the requests they have.
//!
//! Accept errors (the fd limit, say) are logged, at most once a few
//! seconds, and the loop keeps accepting.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

use super::Shared;
use crate::Error;

/// The default header read timeout: 30 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The default idle timeout of a keep-alive connection: 60 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The default time a request body may take to arrive when the request
/// sets no deadline: 60 s.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the accept loop pauses after an error that is not the peer's,
/// such as running out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// How long a connection being closed for a timeout or a stop may take to
/// end by itself (an HTTP/2 GOAWAY) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_millis(250);

/// At most one accept error a this long is logged; the others are counted.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(5);

/// What turns an accepted connection into a TLS one, when the server
/// serves TLS.
#[cfg(feature = "tls")]
pub(crate) type Tls = Option<tokio_rustls::TlsAcceptor>;
/// What turns an accepted connection into a TLS one: never, in a build
/// without the `tls` feature.
#[cfg(not(feature = "tls"))]
pub(crate) type Tls = Option<Infallible>;

/// The timeouts of a server's connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    pub(crate) header_read: Duration,
    pub(crate) idle: Duration,
}

/// Accepts and serves connections until `stop` turns true; then stops
/// accepting, closes what is idle and returns once every connection has
/// finished its requests (the caller bounds that with the grace period).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    shared: Arc<Shared>,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
    tls: Tls,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    // The connection task below keeps the header timeout; hyper's own
    // would also cut idle keep-alive connections at the same bound.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    // Every connection task holds a receiver; `closed` resolves once all
    // of them have ended.
    let (open_tx, open_rx) = watch::channel(());
    let mut errors = AcceptErrors::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        match accepted {
            Ok((tcp, _peer)) => {
                tokio::spawn(connection(
                    tcp,
                    #[allow(clippy::clone_on_copy)]
                    tls.clone(),
                    router.clone(),
                    shared.clone(),
                    builder.clone(),
                    timeouts,
                    stop.clone(),
                    open_rx.clone(),
                ));
            }
            Err(e) if is_peer_error(&e) => {}
            Err(e) => {
                errors.note(&e);
                tokio::time::sleep(ACCEPT_PAUSE).await;
            }
        }
    }
    drop(listener);
    drop(open_rx);
    open_tx.closed().await;
    Ok(())
}

/// Accept errors that concern one peer (it went away before we took it);
/// the next accept is fine.
fn is_peer_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Logs accept errors at warn, at most one per [`ACCEPT_LOG_EVERY`], with
/// the number left unlogged since the last.
#[derive(Default)]
struct AcceptErrors {
    last: Option<Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    fn note(&mut self, e: &std::io::Error) {
        let now = Instant::now();
        if self.last.is_some_and(|t| now < t + ACCEPT_LOG_EVERY) {
            self.unlogged += 1;
            return;
        }
        tracing::warn!(
            error = %e,
            more = self.unlogged,
            "accepting a connection failed; new callers wait until it recovers"
        );
        self.last = Some(now);
        self.unlogged = 0;
    }
}

/// Serves one connection and watches its timeouts and the stop.
#[allow(clippy::too_many_arguments)]
async fn connection(
    tcp: TcpStream,
    tls: Tls,
    router: Router,
    shared: Arc<Shared>,
    builder: Arc<Builder<TokioExecutor>>,
    timeouts: Timeouts,
    stop: watch::Receiver<bool>,
    _open: watch::Receiver<()>,
) {
    // Replies are small and latency matters more than packet count.
    let _ = tcp.set_nodelay(true);
    // A peer that vanished without closing (a crashed host, a cut network)
    // would otherwise hold an idle connection, and a stream's handler, for
    // ever.
    let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive());
    let activity = Arc::new(Activity::new());
    let watched = Watched {
        inner: tcp,
        activity: activity.clone(),
    };
    let parts = Parts {
        router,
        shared,
        builder,
        timeouts,
        stop,
        activity,
    };
    #[cfg(feature = "tls")]
    if let Some(acceptor) = tls {
        // The handshake gets the header read timeout: a peer that never
        // finishes it holds nothing for long.
        let handshake = tokio::time::timeout(timeouts.header_read, acceptor.accept(watched)).await;
        let stream = match handshake {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake not complete in time");
                return;
            }
        };
        let peer = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|cert| crate::tls::common_name(cert))
            .map(|name| crate::auth::Peer::named(&name));
        return drive(TokioIo::new(stream), peer, parts).await;
    }
    #[cfg(not(feature = "tls"))]
    if let Some(never) = tls {
        match never {}
    }
    drive(TokioIo::new(watched), None, parts).await;
}

/// What serving a connection needs besides its socket.
struct Parts {
    router: Router,
    shared: Arc<Shared>,
    builder: Arc<Builder<TokioExecutor>>,
    timeouts: Timeouts,
    stop: watch::Receiver<bool>,
    activity: Arc<Activity>,
}

/// Serves HTTP on `io` (plain or TLS), `peer` being the client
/// certificate's account under mutual TLS.
async fn drive<I>(io: I, peer: Option<crate::auth::Peer>, parts: Parts)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let Parts {
        router,
        shared,
        builder,
        timeouts,
        mut stop,
        activity,
    } = parts;
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        if let Some(peer) = &peer {
            req.extensions_mut().insert(peer.clone());
        }
        let busy = requests.begin();
        let framing = check_framing(&req).map_err(|e| e.or_id(&shared.name));
        let router = router.clone();
        async move {
            let response = match framing {
                Err(err) => {
                    let mut r = crate::wire::error_response(&err);
                    r.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                    r
                }
                Ok(()) => match router.oneshot(req.map(Body::new)).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                },
            };
            if response.extensions().get::<LongBody>().is_some() {
                // The call goes on in its body (a gRPC stream): the
                // connection is busy until the body is done.
                return Ok(response.map(|body| Body::new(Held { body, _busy: busy })));
            }
            drop(busy);
            Ok::<Response, Infallible>(response)
        }
    });
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let mut closing = false;
    // When a connection that is being closed is dropped if it has not
    // finished by itself: an HTTP/2 connection ends on its GOAWAY, but
    // HTTP/1.1 has no way to stop a peer halfway through a request head.
    let mut drop_at: Option<Instant> = None;
    // The timeouts are checked a few times per period rather than timed
    // exactly: one timer per connection, never one per request, at the
    // price of closing up to a quarter of the timeout late.
    let every = (timeouts.header_read.min(timeouts.idle) / 4).max(Duration::from_millis(10));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let until_drop = async {
            match drop_at {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = until_drop => return,
            _ = stop.wait_for(|stop| *stop), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
                if activity.reading_head() {
                    // It has not sent a complete request: nothing to finish.
                    drop_at = Some(Instant::now() + CLOSE_GRACE);
                }
            }
            _ = ticks.tick() => match activity.expired(timeouts) {
                Some(Expired::Header) if drop_at.is_none() => {
                    tracing::debug!(
                        timeout = ?timeouts.header_read,
                        "request head not complete in time; closing the connection"
                    );
                    if !closing {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    drop_at = Some(Instant::now() + CLOSE_GRACE);
                }
                Some(Expired::Idle) if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ => {}
            },
        }
    }
}

/// `Transfer-Encoding` other than `chunked` is refused with 501, as Go's
/// net/http and nginx do: reading a gzip-coded body as if plain would hand
/// the handler garbage.
fn check_framing(req: &Request<Incoming>) -> Result<(), Error> {
    let mut codings = req
        .headers()
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|c| c.trim_ascii())
        .filter(|c| !c.is_empty());
    match (codings.next(), codings.next()) {
        (None, _) => Ok(()),
        (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => Ok(()),
        _ => {
            let value: Vec<String> = req
                .headers()
                .get_all(http::header::TRANSFER_ENCODING)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            Err(Error::new(
                "",
                501,
                format!(
                    "Transfer-Encoding \"{}\" is not supported: send the body plain or chunked",
                    value.join(", ")
                ),
            ))
        }
    }
}

/// TCP keepalive for accepted connections: probes after 60 s idle, every
/// 10 s, so a dead peer is found in about two and a half minutes.
fn keepalive() -> socket2::TcpKeepalive {
    let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "windows"))]
    let keepalive = keepalive.with_interval(Duration::from_secs(10));
    keepalive
}

/// What a connection is doing, for its timeouts. Times are milliseconds
/// since `start`, so that they fit atomics.
struct Activity {
    start: Instant,
    /// Requests whose response is not out yet.
    in_flight: AtomicUsize,
    /// When the connection last became idle (accepted, or its last
    /// response went out).
    idle_since: AtomicU64,
    /// When the first byte of the next request arrived while idle; 0 while
    /// none has. (Stored plus one, so that a byte at 0 ms counts.)
    head_since: AtomicU64,
}

enum Expired {
    Header,
    Idle,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn at(&self, millis: u64) -> Instant {
        self.start + Duration::from_millis(millis)
    }

    /// A request's head is complete: counted until its response is out.
    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.head_since.store(0, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// Bytes arrived.
    fn read(&self) {
        if self.in_flight.load(Ordering::SeqCst) == 0 && self.head_since.load(Ordering::SeqCst) == 0
        {
            self.head_since.store(self.now() + 1, Ordering::SeqCst);
        }
    }

    /// Part of a request head has arrived, and not all of it.
    fn reading_head(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0 && self.head_since.load(Ordering::SeqCst) != 0
    }

    fn expired(&self, timeouts: Timeouts) -> Option<Expired> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let now = Instant::now();
        match self.head_since.load(Ordering::SeqCst) {
            0 => (self.at(self.idle_since.load(Ordering::SeqCst)) + timeouts.idle <= now)
                .then_some(Expired::Idle),
            since => (self.at(since - 1) + timeouts.header_read <= now).then_some(Expired::Header),
        }
    }
}

/// One request in flight.
struct Busy(Arc<Activity>);

/// Marks a response whose body is the rest of the call (a gRPC stream),
/// so that the connection counts as busy until the body is done: a
/// graceful stop lets it finish, and no idle or header timeout cuts it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LongBody;

/// A body that keeps its connection busy while it lives.
struct Held {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for Held {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since.store(a.now(), Ordering::SeqCst);
        a.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The connection's socket, telling [`Activity`] when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
