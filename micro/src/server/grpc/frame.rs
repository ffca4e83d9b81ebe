//! gRPC's length-prefixed messages, the response body that carries them
//! and its trailers, and the frame source and sink a stream runs on.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context as TaskContext, Poll, Waker};

use axum::body::Body;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::HeaderMap;
use http_body::Frame;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

use crate::stream::{FrameSink, FrameSource};
use crate::{Error, Result};

/// The prefix of every message: a compressed flag and a big-endian length.
pub(crate) const PREFIX: usize = 5;

/// How many bytes of messages a stream's sender may queue before it waits
/// for the connection to take them. What is queued goes out as one chunk,
/// so a burst of small messages costs one write, not one each.
const HIGH_WATER: usize = 64 * 1024;

/// `message` with its prefix, uncompressed.
pub(crate) fn encode(message: &[u8]) -> Bytes {
    encode_as(message, Encoding::Identity)
}

/// `message` with its prefix, compressed as `encoding` says.
pub(crate) fn encode_as(message: &[u8], encoding: Encoding) -> Bytes {
    let mut out = BytesMut::with_capacity(PREFIX + message.len());
    append(&mut out, message, encoding);
    out.freeze()
}

/// Appends `message` to `out`, prefixed, compressed as `encoding` says.
fn append(out: &mut BytesMut, message: &[u8], encoding: Encoding) {
    let gzipped = match encoding {
        Encoding::Identity => None,
        Encoding::Gzip => gzip(message),
    };
    let (flag, bytes) = match &gzipped {
        Some(compressed) => (1, &compressed[..]),
        // Writing to memory does not fail; if it did, the message would
        // go uncompressed, which its flag says.
        None => (0, message),
    };
    out.reserve(PREFIX + bytes.len());
    out.put_u8(flag);
    out.put_u32(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
    out.put_slice(bytes);
}

fn gzip(message: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(message.len() / 2 + 32),
        flate2::Compression::fast(),
    );
    gz.write_all(message).ok()?;
    gz.finish().ok()
}

/// How a request's messages may be compressed: its `grpc-encoding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    Identity,
    Gzip,
}

/// The header naming a request's or a reply's compression.
pub(crate) static GRPC_ENCODING: http::HeaderName = http::HeaderName::from_static("grpc-encoding");

/// The header listing the compressions a side reads.
pub(crate) static GRPC_ACCEPT_ENCODING: http::HeaderName =
    http::HeaderName::from_static("grpc-accept-encoding");

/// The encodings this server reads, for `grpc-accept-encoding`.
pub(crate) const ACCEPTED: &str = "gzip,identity";

impl Encoding {
    /// The encoding a request's `grpc-encoding` names (none: identity).
    ///
    /// # Errors
    /// 501 (UNIMPLEMENTED) for one this server does not read.
    pub(crate) fn of(headers: &HeaderMap) -> Result<Self> {
        let Some(value) = headers.get(&GRPC_ENCODING) else {
            return Ok(Encoding::Identity);
        };
        let name = value.as_bytes();
        if name.eq_ignore_ascii_case(b"identity") {
            Ok(Encoding::Identity)
        } else if name.eq_ignore_ascii_case(b"gzip") {
            Ok(Encoding::Gzip)
        } else {
            Err(Error::new(
                "",
                501,
                format!(
                    "grpc-encoding {:?} is not supported: this server accepts {ACCEPTED}",
                    String::from_utf8_lossy(name)
                ),
            ))
        }
    }

    /// How the replies to a request read as `self` are compressed: as the
    /// request was, when its `grpc-accept-encoding` lists that too (as
    /// gRPC's own servers answer); else not at all.
    pub(crate) fn for_replies(self, headers: &HeaderMap) -> Self {
        let lists_gzip = || {
            headers.get_all(&GRPC_ACCEPT_ENCODING).iter().any(|v| {
                v.as_bytes()
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"gzip"))
            })
        };
        match self {
            Encoding::Gzip if lists_gzip() => Encoding::Gzip,
            _ => Encoding::Identity,
        }
    }

    /// The reply header that says so, if any.
    pub(crate) fn header(self) -> Option<http::HeaderValue> {
        match self {
            Encoding::Identity => None,
            Encoding::Gzip => Some(http::HeaderValue::from_static("gzip")),
        }
    }
}

/// What a message's prefix says: whether the message is compressed, and
/// its length on the wire.
///
/// # Errors
/// 413 for a message over `limit` (RESOURCE_EXHAUSTED); 500 (INTERNAL)
/// for a compressed one when the request named no compression, as gRPC
/// says; 400 for a flag that is neither 0 nor 1.
fn prefix(prefix: &[u8], limit: usize, encoding: Encoding) -> Result<(bool, usize)> {
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    let compressed = match prefix[0] {
        0 => false,
        1 if encoding == Encoding::Gzip => true,
        1 => {
            return Err(Error::internal(format!(
                "compressed gRPC message in a request that names no compression: send grpc-encoding (this server accepts {ACCEPTED})"
            )));
        }
        flag => {
            return Err(Error::bad_request(format!(
                "gRPC message prefix with the compressed flag {flag}: only 0 and 1 are defined"
            )));
        }
    };
    if len > limit {
        return Err(Error::payload_too_large(format!(
            "gRPC message of {len} bytes is larger than the limit of {limit} bytes"
        )));
    }
    Ok((compressed, len))
}

/// The message a handler reads: `raw` itself, or decompressed when it is
/// compressed, refusing more than `limit` bytes of it.
///
/// # Errors
/// 400 for data that does not decompress, 413 past `limit`.
fn open(raw: Bytes, compressed: bool, limit: usize) -> Result<Bytes> {
    use std::io::Read;
    if !compressed {
        return Ok(raw);
    }
    let mut out = Vec::new();
    let limited = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    match flate2::read::GzDecoder::new(&raw[..])
        .take(limited)
        .read_to_end(&mut out)
    {
        Err(e) => Err(Error::bad_request(format!(
            "gzip-compressed gRPC message does not decompress: {e}"
        ))),
        Ok(_) if out.len() > limit => Err(Error::payload_too_large(format!(
            "gzip-compressed gRPC message of {} bytes decompresses to more than the limit of {limit} bytes",
            raw.len()
        ))),
        Ok(_) => Ok(out.into()),
    }
}

/// Takes the next whole message off the front of `buf`, if it is there,
/// decompressed.
///
/// # Errors
/// As [`prefix`] and [`open`].
pub(crate) fn take(buf: &mut BytesMut, limit: usize, encoding: Encoding) -> Result<Option<Bytes>> {
    if buf.len() < PREFIX {
        return Ok(None);
    }
    let (compressed, len) = prefix(&buf[..PREFIX], limit, encoding)?;
    if buf.len() < PREFIX + len {
        return Ok(None);
    }
    buf.advance(PREFIX);
    open(buf.split_to(len).freeze(), compressed, limit).map(Some)
}

/// The error for a body that ended inside a message.
pub(crate) fn truncated(buf: &[u8]) -> Error {
    let detail = if buf.len() < PREFIX {
        format!(
            "the request ended inside a message's 5-byte prefix, after {} bytes",
            buf.len()
        )
    } else {
        let need = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
        format!(
            "the request ended after {} of a message's {need} bytes",
            buf.len() - PREFIX
        )
    };
    Error::bad_request(format!("truncated gRPC message: {detail}"))
}

/// The one message of a unary request's body, sliced out of it without a
/// copy (unless it is compressed).
///
/// # Errors
/// As [`prefix`] and [`open`]; 400 for a body that is not exactly one
/// whole message.
pub(crate) fn single(body: Bytes, limit: usize, encoding: Encoding) -> Result<Bytes> {
    if body.is_empty() {
        return Err(Error::bad_request(
            "no request message: a unary gRPC call sends exactly one",
        ));
    }
    if body.len() < PREFIX {
        return Err(truncated(&body));
    }
    let (compressed, len) = prefix(&body[..PREFIX], limit, encoding)?;
    if body.len() < PREFIX + len {
        return Err(truncated(&body));
    }
    if body.len() > PREFIX + len {
        return Err(Error::bad_request(
            "more than one request message: a unary gRPC call sends exactly one",
        ));
    }
    open(body.slice(PREFIX..), compressed, limit)
}

/// A gRPC response body: its messages, then its trailers.
pub(crate) enum GrpcBody {
    /// A unary reply, or nothing but trailers.
    Once {
        data: Option<Bytes>,
        trailers: Option<HeaderMap>,
    },
    /// A stream's replies, as its sender queues them.
    Stream(Arc<Out>),
    /// A stream's replies, with the handler that sends them, which runs
    /// as the body is polled.
    Driven {
        out: Arc<Out>,
        handler: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    },
}

impl http_body::Body for GrpcBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            GrpcBody::Once { data, trailers } => Poll::Ready(
                data.take()
                    .map(Frame::data)
                    .or_else(|| trailers.take().map(Frame::trailers))
                    .map(Ok),
            ),
            GrpcBody::Stream(out) => out.poll_body(cx).map(|f| f.map(Ok)),
            GrpcBody::Driven { out, handler } => {
                if let Some(running) = handler
                    && running.as_mut().poll(cx).is_ready()
                {
                    *handler = None;
                }
                out.poll_body(cx).map(|f| f.map(Ok))
            }
        }
    }

    /// True for a trailers-only response, so that it goes out as one
    /// HEADERS frame that ends the stream, as gRPC clients require.
    fn is_end_stream(&self) -> bool {
        matches!(
            self,
            GrpcBody::Once {
                data: None,
                trailers: None
            }
        )
    }
}

impl Drop for GrpcBody {
    fn drop(&mut self) {
        if let GrpcBody::Stream(out) | GrpcBody::Driven { out, .. } = self {
            out.body_dropped();
        }
    }
}

/// What a stream's sender and its response body share.
#[derive(Default)]
pub(crate) struct Out {
    state: Mutex<OutState>,
    /// Notified once when the body is dropped: the client went away, or
    /// the connection did.
    gone: Notify,
    /// Set with `gone` or `finished`: the sender checks it without the
    /// lock.
    closed: AtomicBool,
    /// The bytes queued, as the sender sees them without the lock.
    queued: AtomicUsize,
}

#[derive(Default)]
struct OutState {
    /// Framed messages not yet taken by the body.
    queue: BytesMut,
    trailers: Option<HeaderMap>,
    /// The trailers are set: nothing more is sent.
    finished: bool,
    /// The body was dropped.
    gone: bool,
    body_waker: Option<Waker>,
    send_waker: Option<Waker>,
    /// The stream's place among the server's open streams, held until
    /// the body is sent or dropped: a graceful stop waits for the
    /// trailers to go out.
    open: Option<crate::server::streams::Open>,
}

impl Out {
    fn lock(&self) -> MutexGuard<'_, OutState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn poll_body(&self, cx: &mut TaskContext<'_>) -> Poll<Option<Frame<Bytes>>> {
        let mut state = self.lock();
        if !state.queue.is_empty() {
            let data = state.queue.split().freeze();
            self.queued.store(0, Ordering::Release);
            if let Some(w) = state.send_waker.take() {
                w.wake();
            }
            return Poll::Ready(Some(Frame::data(data)));
        }
        if let Some(trailers) = state.trailers.take() {
            return Poll::Ready(Some(Frame::trailers(trailers)));
        }
        if state.finished {
            state.open = None;
            return Poll::Ready(None);
        }
        match &state.body_waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => state.body_waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Counts the stream as open until the body is done.
    pub(crate) fn hold(&self, open: crate::server::streams::Open) {
        self.lock().open = Some(open);
    }

    fn body_dropped(&self) {
        let mut state = self.lock();
        state.open = None;
        state.gone = true;
        self.closed.store(true, Ordering::Release);
        state.queue = BytesMut::new();
        if let Some(w) = state.send_waker.take() {
            w.wake();
        }
        drop(state);
        self.gone.notify_one();
    }

    /// Resolves once the body is dropped.
    pub(crate) async fn gone(&self) {
        self.gone.notified().await;
    }

    /// Queues one message, already framed, as the body will send it.
    pub(crate) fn push(&self, message: &[u8]) {
        let mut state = self.lock();
        if state.finished || state.gone {
            return;
        }
        state.queue.extend_from_slice(message);
        if let Some(w) = state.body_waker.take() {
            w.wake();
        }
    }

    /// Ends the body with `trailers`, after what is queued.
    pub(crate) fn finish(&self, trailers: HeaderMap) {
        let mut state = self.lock();
        if state.finished {
            return;
        }
        state.finished = true;
        self.closed.store(true, Ordering::Release);
        state.trailers = Some(trailers);
        if let Some(w) = state.body_waker.take() {
            w.wake();
        }
    }
}

fn gone() -> Error {
    Error::unavailable("the gRPC call is over: the client cancelled it or went away")
}

/// A stream handler's sending half: messages queue for the body,
/// compressed as the replies are.
pub(crate) struct Sink {
    out: Arc<Out>,
    replies: Encoding,
}

impl Sink {
    pub(crate) fn new(out: Arc<Out>, replies: Encoding) -> Self {
        Self { out, replies }
    }
}

impl FrameSink for Sink {
    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        // Without the lock while there is room: one lock per message, in
        // `start_send`.
        if self.out.closed.load(Ordering::Acquire) {
            return Poll::Ready(Err(gone()));
        }
        if self.out.queued.load(Ordering::Acquire) < HIGH_WATER {
            return Poll::Ready(Ok(()));
        }
        let mut state = self.out.lock();
        if state.gone || state.finished {
            return Poll::Ready(Err(gone()));
        }
        if state.queue.len() >= HIGH_WATER {
            match &state.send_waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => state.send_waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(&mut self, message: Message) -> Result<()> {
        let bytes = match message {
            Message::Binary(b) => b,
            Message::Text(t) => Bytes::from(t),
            _ => return Ok(()),
        };
        let mut state = self.out.lock();
        if state.gone || state.finished {
            return Err(gone());
        }
        if bytes.is_empty() {
            // The end of the server's direction: the trailers follow when
            // the handler returns.
            return Ok(());
        }
        let queue = &mut state.queue;
        append(queue, &bytes, self.replies);
        self.out.queued.store(queue.len(), Ordering::Release);
        if let Some(w) = state.body_waker.take() {
            w.wake();
        }
        Ok(())
    }

    fn start_send_into(
        &mut self,
        encode: &mut dyn FnMut(&mut BytesMut) -> std::result::Result<(), crate::codec::CodecError>,
    ) -> Option<Result<()>> {
        let mut state = self.out.lock();
        if state.gone || state.finished {
            return Some(Err(gone()));
        }
        let queue = &mut state.queue;
        if self.replies != Encoding::Identity {
            // Encoded whole, then compressed into the queue.
            let mut message = BytesMut::new();
            if let Err(e) = encode(&mut message) {
                return Some(Err(crate::stream::encode_error(e)));
            }
            append(queue, &message, self.replies);
            self.out.queued.store(queue.len(), Ordering::Release);
            if let Some(w) = state.body_waker.take() {
                w.wake();
            }
            return Some(Ok(()));
        }
        let start = queue.len();
        queue.put_u8(0);
        queue.put_u32(0);
        if let Err(e) = encode(queue) {
            queue.truncate(start);
            return Some(Err(crate::stream::encode_error(e)));
        }
        // The length, now that it is known. An empty message is a message
        // here: gRPC ends the server's direction with its trailers.
        let len = u32::try_from(queue.len() - start - PREFIX).unwrap_or(u32::MAX);
        queue[start + 1..start + PREFIX].copy_from_slice(&len.to_be_bytes());
        self.out.queued.store(queue.len(), Ordering::Release);
        if let Some(w) = state.body_waker.take() {
            w.wake();
        }
        Some(Ok(()))
    }

    fn poll_flush(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<()>> {
        // What is queued is the body's to send; only a body that is gone
        // fails.
        if self.out.closed.load(Ordering::Acquire) && self.out.lock().gone {
            return Poll::Ready(Err(gone()));
        }
        Poll::Ready(Ok(()))
    }
}

/// A stream handler's receiving half: messages as the request body brings
/// them.
pub(crate) struct Source {
    /// Behind a lock only to be `Sync`; only `&mut self` reaches it.
    body: Mutex<Body>,
    buf: BytesMut,
    limit: usize,
    encoding: Encoding,
    ended: bool,
    failed: bool,
}

impl Source {
    pub(crate) fn new(body: Body, limit: usize, encoding: Encoding) -> Self {
        Self {
            body: Mutex::new(body),
            buf: BytesMut::new(),
            limit,
            encoding,
            ended: false,
            failed: false,
        }
    }

    /// The next message, `None` at the end of the client's direction.
    pub(crate) fn poll_message(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Bytes>>> {
        use http_body::Body as _;
        if self.failed {
            return Poll::Ready(None);
        }
        loop {
            match take(&mut self.buf, self.limit, self.encoding) {
                Ok(Some(message)) => return Poll::Ready(Some(Ok(message))),
                Ok(None) => {}
                Err(e) => {
                    self.failed = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            if self.ended {
                if self.buf.is_empty() {
                    return Poll::Ready(None);
                }
                self.failed = true;
                return Poll::Ready(Some(Err(truncated(&self.buf))));
            }
            let body = self
                .body
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match std::task::ready!(Pin::new(body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => {
                    self.failed = true;
                    return Poll::Ready(Some(Err(Error::unavailable(format!(
                        "reading the gRPC request stream: {e}"
                    )))));
                }
                None => self.ended = true,
            }
        }
    }
}

impl FrameSource for Source {
    fn poll_frame(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Bytes>>> {
        self.poll_message(cx)
    }

    fn undecodable(&self, err: crate::codec::CodecError) -> Error {
        Error::bad_request(format!("gRPC request message does not decode: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_and_join() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&encode(b"hello"));
        buf.extend_from_slice(&encode(b""));
        buf.extend_from_slice(&encode(b"wor")[..6]);
        let id = Encoding::Identity;
        assert_eq!(
            take(&mut buf, 100, id).unwrap().as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(take(&mut buf, 100, id).unwrap().as_deref(), Some(&b""[..]));
        assert_eq!(take(&mut buf, 100, id).unwrap(), None);
        assert!(
            truncated(&buf)
                .detail()
                .contains("after 1 of a message's 3 bytes")
        );
    }

    #[test]
    fn limits_and_flags() {
        let id = Encoding::Identity;
        let mut big = BytesMut::from(&encode(&[0; 11])[..]);
        assert_eq!(take(&mut big, 10, id).unwrap_err().code(), 413);
        let mut compressed = BytesMut::from(&[1u8, 0, 0, 0, 1, 9][..]);
        assert_eq!(take(&mut compressed, 10, id).unwrap_err().code(), 500);
        let mut flag = BytesMut::from(&[2u8, 0, 0, 0, 1, 9][..]);
        assert_eq!(take(&mut flag, 10, Encoding::Gzip).unwrap_err().code(), 400);
        assert_eq!(single(Bytes::new(), 10, id).unwrap_err().code(), 400);
        let two = [encode(b"a"), encode(b"b")].concat();
        assert_eq!(single(two.into(), 10, id).unwrap_err().code(), 400);
        assert_eq!(
            single(encode(b"a"), 10, id).unwrap(),
            Bytes::from_static(b"a")
        );
    }

    /// `message` gzip-compressed, with the compressed flag.
    fn gzipped(message: &[u8]) -> Bytes {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(message).unwrap();
        let data = gz.finish().unwrap();
        let mut out = BytesMut::new();
        out.put_u8(1);
        out.put_u32(u32::try_from(data.len()).unwrap());
        out.put_slice(&data);
        out.freeze()
    }

    #[test]
    fn gzip_messages_are_read_within_the_limit() {
        let gz = Encoding::Gzip;
        let message = b"hello hello hello hello hello".repeat(10);
        // A stream may mix compressed and plain messages.
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&gzipped(&message));
        buf.extend_from_slice(&encode(b"plain"));
        assert_eq!(take(&mut buf, 1000, gz).unwrap().unwrap(), message);
        assert_eq!(take(&mut buf, 1000, gz).unwrap().unwrap(), &b"plain"[..]);
        assert_eq!(single(gzipped(&message), 1000, gz).unwrap(), message);
        // Small on the wire, over the limit once decompressed.
        let bomb = gzipped(&[0; 100_000]);
        assert!(bomb.len() < 1000);
        let err = single(bomb, 1000, gz).unwrap_err();
        assert_eq!(err.code(), 413, "{err}");
        let mut garbage = BytesMut::from(&[1u8, 0, 0, 0, 3][..]);
        garbage.extend_from_slice(b"abc");
        let err = single(garbage.freeze(), 1000, gz).unwrap_err();
        assert_eq!(err.code(), 400);
        assert!(err.detail().contains("does not decompress"), "{err}");
    }

    #[test]
    fn replies_are_compressed_as_requests_when_accepted() {
        let mut h = HeaderMap::new();
        assert_eq!(Encoding::Gzip.for_replies(&h), Encoding::Identity);
        h.insert(
            &GRPC_ACCEPT_ENCODING,
            http::HeaderValue::from_static("identity, deflate, GZIP"),
        );
        assert_eq!(Encoding::Gzip.for_replies(&h), Encoding::Gzip);
        assert_eq!(Encoding::Identity.for_replies(&h), Encoding::Identity);
        let message = b"reply reply reply reply reply reply".repeat(20);
        let framed = encode_as(&message, Encoding::Gzip);
        assert_eq!(framed[0], 1);
        assert!(framed.len() < message.len() / 4, "{}", framed.len());
        assert_eq!(single(framed, 10_000, Encoding::Gzip).unwrap(), message);
        assert_eq!(encode_as(b"x", Encoding::Identity), encode(b"x"));
    }

    #[test]
    fn encodings() {
        let of = |v: Option<&'static str>| {
            let mut h = HeaderMap::new();
            if let Some(v) = v {
                h.insert("grpc-encoding", http::HeaderValue::from_static(v));
            }
            Encoding::of(&h)
        };
        assert_eq!(of(None).unwrap(), Encoding::Identity);
        assert_eq!(of(Some("identity")).unwrap(), Encoding::Identity);
        assert_eq!(of(Some("gzip")).unwrap(), Encoding::Gzip);
        let err = of(Some("snappy")).unwrap_err();
        assert_eq!(err.code(), 501);
        assert!(err.detail().contains("accepts gzip,identity"), "{err}");
    }
}
