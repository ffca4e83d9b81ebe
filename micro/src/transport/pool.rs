//! The connection pool under the direct and TLS stacks: HTTP/1.1
//! keep-alive connections by peer (`host:port`), the most recently used
//! taken first.
//!
//! A call takes an idle connection and hands it the request in one step,
//! and gives the connection back once it has read the reply, from its own
//! task: no task per request and no second map lookup on the way back,
//! which is where hyper-util's general pool spends its time. A request
//! that a reused connection closed before sending goes again on another
//! one (the peer may close an idle connection at any moment); one that
//! was sent is never sent twice.

use std::collections::{HashMap, VecDeque};
use std::error::Error as StdError;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::Either;
use http::header::HOST;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use tower::ServiceExt;

type BoxError = Box<dyn StdError + Send + Sync>;
type Sender = SendRequest<Full<Bytes>>;

/// How long a connection may stay idle before it is closed instead of
/// used: 50 s, under a micro server's own 60 s (`DEFAULT_IDLE_TIMEOUT`),
/// so that a call is not sent on a connection the server is closing.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// Every how many uses the pool drops the peers it holds no live
/// connection to (a client that called many short-lived nodes, or
/// addresses where nothing listens).
const SWEEP_EVERY: u32 = 1024;

/// Keep-alive connections made by `connector`, by peer.
pub(crate) struct Pool<C> {
    connector: C,
    idle: Arc<Idle>,
}

/// The idle connections, by peer.
#[derive(Default)]
struct Idle {
    peers: Mutex<Peers>,
}

#[derive(Default)]
struct Peers {
    by_authority: HashMap<Box<str>, Peer>,
    /// Takes and returns since the last sweep.
    uses: u32,
}

/// One peer's idle connections, the oldest first, and its `Host`
/// header, made once.
struct Peer {
    host: Option<HeaderValue>,
    idle: VecDeque<(Sender, Instant)>,
}

impl Peer {
    fn new(authority: &str) -> Self {
        Self {
            host: HeaderValue::from_str(authority).ok(),
            idle: VecDeque::new(),
        }
    }

    /// The newest idle connection that is ready for a request, if there
    /// is one; connections found closed or idle too long are dropped on
    /// the way.
    fn take(&mut self, now: Instant) -> Option<Sender> {
        while let Some((sender, since)) = self.idle.pop_back() {
            if now.saturating_duration_since(since) >= IDLE_TIMEOUT {
                // The older ones have waited longer still.
                self.idle.clear();
                return None;
            }
            if sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    /// Keeps `sender` as the newest idle connection.
    fn put(&mut self, sender: Sender, now: Instant) {
        // The oldest goes when it is dead, so that a peer that stops being
        // called does not keep its connections' handles for ever.
        if let Some((oldest, since)) = self.idle.front()
            && (oldest.is_closed() || now.saturating_duration_since(*since) >= IDLE_TIMEOUT)
        {
            self.idle.pop_front();
        }
        self.idle.push_back((sender, now));
    }
}

impl Peers {
    /// Counts a use of the pool; every [`SWEEP_EVERY`]th first drops the
    /// peers without a live idle connection.
    fn used(&mut self, now: Instant) {
        self.uses += 1;
        if self.uses < SWEEP_EVERY {
            return;
        }
        self.uses = 0;
        self.by_authority.retain(|_, peer| {
            peer.idle.retain(|(sender, since)| {
                !sender.is_closed() && now.saturating_duration_since(*since) < IDLE_TIMEOUT
            });
            !peer.idle.is_empty()
        });
    }
}

impl Idle {
    fn lock(&self) -> MutexGuard<'_, Peers> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle connection to `authority` that is ready for a request, if
    /// there is one, and the peer's `Host` header. A known peer costs one
    /// lookup; a new one is added.
    fn take(&self, authority: &str) -> (Option<Sender>, Option<HeaderValue>) {
        let now = Instant::now();
        let mut peers = self.lock();
        peers.used(now);
        if let Some(peer) = peers.by_authority.get_mut(authority) {
            return (peer.take(now), peer.host.clone());
        }
        let peer = Peer::new(authority);
        let host = peer.host.clone();
        peers.by_authority.insert(authority.into(), peer);
        (None, host)
    }

    /// Takes `sender` back as idle.
    fn put(&self, authority: &str, sender: Sender) {
        let now = Instant::now();
        let mut peers = self.lock();
        peers.used(now);
        if let Some(peer) = peers.by_authority.get_mut(authority) {
            peer.put(sender, now);
            return;
        }
        // Swept while the connection was lent.
        let mut peer = Peer::new(authority);
        peer.put(sender, now);
        peers.by_authority.insert(authority.into(), peer);
    }
}

/// A connection lent to one request. [`release`](Self::release) once the
/// reply is read gives it back; dropped otherwise, it goes back only if it
/// is ready for another request (a reply left unread closes it).
pub(crate) struct Lease {
    idle: Arc<Idle>,
    authority: Authority,
    sender: Option<Sender>,
}

impl Lease {
    /// The reply is read: the connection goes back, now, or as soon as
    /// hyper has finished with the reply.
    pub(crate) fn release(mut self) {
        let Some(mut sender) = self.sender.take() else {
            return;
        };
        if sender.is_ready() {
            self.idle.put(self.authority.as_str(), sender);
        } else if !sender.is_closed() {
            let (idle, authority) = (self.idle.clone(), self.authority.clone());
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    idle.put(authority.as_str(), sender);
                }
            });
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take()
            && sender.is_ready()
        {
            self.idle.put(self.authority.as_str(), sender);
        }
    }
}

/// A reply with its body still to be read, and the connection it came on.
pub(crate) type Leased = (Response<Incoming>, Lease);

impl<C> Pool<C>
where
    C: tower::Service<Uri> + Clone + Send + Sync + 'static,
    C::Response: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    pub(crate) fn new(connector: C) -> Self {
        Self {
            connector,
            idle: Arc::default(),
        }
    }

    /// Sends one request (its URI in absolute form) on an idle connection
    /// to its authority, or a new one.
    ///
    /// Not an `async fn`: when an idle connection is there, the request is
    /// handed to it before this returns, so the future holds no request.
    pub(crate) fn send(
        self: &Arc<Self>,
        mut parts: http::request::Parts,
        body: Bytes,
    ) -> impl Future<Output = Result<Leased, BoxError>> + Send + 'static {
        let Some(authority) = parts.uri.authority().cloned() else {
            let error: BoxError = format!("the URI {} names no host", parts.uri).into();
            return Either::Right(Either::Left(std::future::ready(Err(error))));
        };
        let scheme = parts.uri.scheme().cloned().unwrap_or(Scheme::HTTP);
        // HTTP/1.1 sends the path alone, the peer in `Host`.
        parts.uri = match parts.uri.path_and_query() {
            Some(path) => Uri::from(path.clone()),
            None => Uri::from_static("/"),
        };
        let (sender, host) = self.idle.take(authority.as_str());
        if let Some(host) = host
            && !parts.headers.contains_key(HOST)
        {
            parts.headers.insert(HOST, host);
        }
        let request = Request::from_parts(parts, Full::new(body));
        let pool = self.clone();
        let Some(mut sender) = sender else {
            return Either::Right(Either::Right(Box::pin(
                pool.send_again(authority, scheme, request),
            )));
        };
        let sent = sender.try_send_request(request);
        Either::Left(async move {
            match sent.await {
                Ok(response) => Ok((response, pool.lease(authority, sender))),
                Err(mut e) => match e.take_message() {
                    // Closed before the request went out: another
                    // connection takes it. Boxed: rare, and large.
                    Some(request) => {
                        drop(sender);
                        Box::pin(pool.send_again(authority, scheme, request)).await
                    }
                    None => Err(e.into_error().into()),
                },
            }
        })
    }

    fn lease(&self, authority: Authority, sender: Sender) -> Lease {
        Lease {
            idle: self.idle.clone(),
            authority,
            sender: Some(sender),
        }
    }

    /// Sends `request` on the next idle connection that takes it, or else
    /// on a new one.
    async fn send_again(
        self: Arc<Self>,
        authority: Authority,
        scheme: Scheme,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Leased, BoxError> {
        loop {
            let (Some(mut sender), _) = self.idle.take(authority.as_str()) else {
                break;
            };
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, self.lease(authority, sender))),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(e.into_error().into()),
                },
            }
        }
        let mut sender = self.connect(&authority, scheme).await?;
        match sender.try_send_request(request).await {
            Ok(response) => Ok((response, self.lease(authority, sender))),
            Err(e) => Err(e.into_error().into()),
        }
    }

    /// A new connection to `authority`, its driver spawned.
    async fn connect(&self, authority: &Authority, scheme: Scheme) -> Result<Sender, BoxError> {
        let uri = Uri::builder()
            .scheme(scheme)
            .authority(authority.clone())
            .path_and_query("/")
            .build()?;
        let io = self
            .connector
            .clone()
            .oneshot(uri)
            .await
            .map_err(Into::into)?;
        let (sender, connection) = http1::Builder::new().handshake(io).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "client connection ended");
            }
        });
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use hyper_util::client::legacy::connect::HttpConnector;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A peer that answers every request with its target and `Host`
    /// (`target host`), closing each connection after one reply when
    /// `close` says so; counts the connections it accepts.
    async fn peer(close: bool) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut tcp, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let mut chunk = [0u8; 1024];
                        let n = tcp.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let target = head.split(' ').nth(1).unwrap_or_default().to_owned();
                        let host = head
                            .lines()
                            .find_map(|l| l.strip_prefix("host: "))
                            .unwrap_or("none")
                            .to_owned();
                        let body = if target == "/big" {
                            "x".repeat(4 << 20)
                        } else {
                            format!("{target} {host}")
                        };
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        tcp.write_all(reply.as_bytes()).await.unwrap();
                        if close {
                            // Closed without a word, as a peer's idle
                            // timeout would.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            return;
                        }
                    }
                });
            }
        });
        (address, accepted)
    }

    fn request(address: &str, path: &str) -> http::request::Parts {
        let mut parts = Request::new(()).into_parts().0;
        parts.uri = format!("http://{address}{path}").parse().unwrap();
        parts
    }

    /// One request through `pool`, its reply read whole and the connection
    /// given back.
    async fn call(pool: &Arc<Pool<HttpConnector>>, address: &str, path: &str) -> String {
        let (response, lease) = pool
            .send(request(address, path), Bytes::new())
            .await
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        lease.release();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn sends_the_path_and_host_and_reuses_one_connection() {
        let (address, accepted) = peer(false).await;
        let pool = Arc::new(Pool::new(HttpConnector::new()));
        for i in 0..20 {
            let reply = call(&pool, &address, &format!("/topic/{i}?q=1")).await;
            assert_eq!(reply, format!("/topic/{i}?q=1 {address}"));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn concurrent_requests_get_a_connection_each_and_leave_them_idle() {
        let (address, accepted) = peer(false).await;
        let pool = Arc::new(Pool::new(HttpConnector::new()));
        let calls = (0..8).map(|_| call(&pool, &address, "/"));
        for reply in futures_util::future::join_all(calls).await {
            assert_eq!(reply, format!("/ {address}"));
        }
        let opened = accepted.load(Ordering::SeqCst);
        assert!((1..=8).contains(&opened), "{opened} connections");
        for _ in 0..8 {
            call(&pool, &address, "/").await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), opened);
    }

    #[tokio::test]
    async fn a_connection_the_peer_closed_is_not_used_again() {
        let (address, accepted) = peer(true).await;
        let pool = Arc::new(Pool::new(HttpConnector::new()));
        for round in 1..=3 {
            assert_eq!(call(&pool, &address, "/").await, format!("/ {address}"));
            // The peer closes; the connection's driver sees it.
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(accepted.load(Ordering::SeqCst), round);
        }
    }

    #[tokio::test]
    async fn a_reply_left_unread_does_not_go_back() {
        let (address, accepted) = peer(false).await;
        let pool = Arc::new(Pool::new(HttpConnector::new()));
        let (response, lease) = pool
            .send(request(&address, "/big"), Bytes::new())
            .await
            .unwrap();
        // Dropped with most of 4 MiB unread: the connection cannot take
        // another request, so it is closed, not pooled.
        drop((response, lease));
        assert_eq!(call(&pool, &address, "/").await, format!("/ {address}"));
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn peers_without_idle_connections_are_swept() {
        let idle = Idle::default();
        for port in 0..3000 {
            let (sender, host) = idle.take(&format!("127.0.0.1:{port}"));
            assert!(sender.is_none());
            assert_eq!(host.unwrap(), format!("127.0.0.1:{port}").as_str());
        }
        let known = idle.lock().by_authority.len();
        assert!(known <= SWEEP_EVERY as usize, "{known} peers kept");
    }

    #[tokio::test]
    async fn no_peer_is_an_error_and_no_authority_is_one_too() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let pool = Arc::new(Pool::new(HttpConnector::new()));
        let err = pool
            .send(request(&address, "/"), Bytes::new())
            .await
            .err()
            .unwrap();
        assert!(crate::transport::chain(&*err).contains("refused"), "{err}");
        let mut parts = Request::new(()).into_parts().0;
        parts.uri = Uri::from_static("/relative");
        let err = pool.send(parts, Bytes::new()).await.err().unwrap();
        assert!(err.to_string().contains("names no host"), "{err}");
    }
}
