//! Streams: many messages each way over one WebSocket.
//!
//! A streaming endpoint is opened with a WebSocket upgrade on the service's
//! own port (docs/wire.md, "Streams"). One message is one WebSocket message:
//! text frames for JSON, binary frames for MessagePack. An empty frame ends
//! one direction (a half-close), and an error closes the socket with close
//! code `4000 + code` and the error's detail as the reason.
//!
//! `#[handler]` recognises three shapes:
//!
//! - bidirectional: the handler takes a [`Stream<Req, Rsp>`] and returns
//!   `Result<()>`;
//! - client streaming: it takes a [`Streaming<Req>`] and returns one
//!   `Result<Rsp>`;
//! - server streaming: it takes one request and returns
//!   `Result<Streaming<Rsp>>`.
//!
//! ```
//! use micro::{handler, service, Result, Stream, Streaming};
//!
//! struct Echo;
//!
//! #[service]
//! impl Echo {
//!     /// `Echo.Chat`: every message comes back.
//!     #[handler]
//!     async fn chat(&self, mut stream: Stream<String, String>) -> Result<()> {
//!         while let Some(text) = stream.recv().await? {
//!             stream.send(text).await?;
//!         }
//!         Ok(())
//!     }
//!
//!     /// `Echo.Sum`: many numbers in, one total out.
//!     #[handler]
//!     async fn sum(&self, mut numbers: Streaming<i64>) -> Result<i64> {
//!         let mut total = 0;
//!         while let Some(n) = numbers.recv().await? {
//!             total += n;
//!         }
//!         Ok(total)
//!     }
//!
//!     /// `Echo.Count`: one request in, many replies out.
//!     #[handler]
//!     async fn count(&self, to: u32) -> Result<Streaming<u32>> {
//!         Ok(Streaming::iter(1..=to))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> micro::Result<()> {
//! # let registry = std::sync::Arc::new(micro::registry::MemoryRegistry::new());
//! # let running = micro::Service::new("echo").address("127.0.0.1:0")
//! #     .registry(registry.clone()).handle(Echo).start().await?;
//! # let client = micro::Client::builder().registry(registry).build();
//! let echo = EchoClient::new("echo", client);
//!
//! let mut chat = echo.chat().await?;
//! chat.send("hello".to_owned()).await?;
//! assert_eq!(chat.recv().await?.as_deref(), Some("hello"));
//! chat.close_send().await?;
//! assert_eq!(chat.recv().await?, None);
//!
//! let mut sum = echo.sum().await?;
//! for n in [1, 2, 3] {
//!     sum.send(n).await?;
//! }
//! assert_eq!(sum.close_and_recv().await?, 6);
//!
//! let mut count = echo.count(3).await?;
//! let mut seen = Vec::new();
//! while let Some(n) = count.recv().await? {
//!     seen.push(n);
//! }
//! assert_eq!(seen, [1, 2, 3]);
//! # running.stop().await
//! # }
//! ```

use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Sink, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Utf8Bytes;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};

use crate::codec::ContentType;
use crate::{Context, Error, Result};

/// A WebSocket on an upgraded HTTP/1.1 connection, either side.
pub(crate) type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// A stream socket's read buffer, on both sides. tungstenite's default
/// (128 KiB, zero-filled on the first read) made an idle stream cost
/// about 140 KiB; larger messages still arrive whole, in more reads.
pub(crate) const READ_BUFFER: usize = 8 * 1024;

/// The socket settings of both sides: small buffers, and `limit` on a
/// message and a frame.
pub(crate) fn socket_config(limit: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(READ_BUFFER)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
}

/// Close codes from here up carry an error: `4000 + code`.
pub(crate) const ERROR_CLOSE_BASE: u16 = 4000;

/// The longest close reason a close frame can carry, in bytes.
const MAX_REASON: usize = 123;

/// The kind of a streaming endpoint, as its registry metadata says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamKind {
    /// Many messages each way: the handler takes a [`Stream`].
    Bidirectional,
    /// Many requests, one response: the handler takes a [`Streaming`].
    Client,
    /// One request, many responses: the handler returns a [`Streaming`].
    Server,
}

/// The endpoint metadata key that marks a stream (`"true"`), as Go Micro
/// marks them.
pub const STREAM_METADATA: &str = "stream";

/// The endpoint metadata key that gives a stream's [`StreamKind`].
pub const STREAM_KIND_METADATA: &str = "stream.kind";

impl StreamKind {
    /// The value of the endpoint's `stream.kind` metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Bidirectional => "bidirectional",
            StreamKind::Client => "client",
            StreamKind::Server => "server",
        }
    }

    /// The kind an endpoint's metadata declares; `None` for a plain
    /// request/response endpoint.
    pub fn of(endpoint: &crate::registry::Endpoint) -> Option<Self> {
        if endpoint.metadata.get(STREAM_METADATA).map(String::as_str) != Some("true") {
            return None;
        }
        Some(
            match endpoint
                .metadata
                .get(STREAM_KIND_METADATA)
                .map(String::as_str)
            {
                Some("client") => StreamKind::Client,
                Some("server") => StreamKind::Server,
                _ => StreamKind::Bidirectional,
            },
        )
    }

    /// `endpoint`, marked as a stream of this kind.
    pub fn mark(self, endpoint: crate::registry::Endpoint) -> crate::registry::Endpoint {
        endpoint
            .with_metadata(STREAM_METADATA, "true")
            .with_metadata(STREAM_KIND_METADATA, self.as_str())
    }
}

impl fmt::Display for StreamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A data frame: text for JSON, binary otherwise. The empty frame is the
/// half-close marker.
pub(crate) fn data_frame(content_type: ContentType, bytes: Bytes) -> Message {
    if content_type == ContentType::Json {
        // Cloning `Bytes` only counts a reference.
        match Utf8Bytes::try_from(bytes.clone()) {
            Ok(text) => Message::Text(text),
            Err(_) => Message::Binary(bytes),
        }
    } else {
        Message::Binary(bytes)
    }
}

/// The close frame that carries `err`: code `4000 + code` (codes outside
/// 0–999 become 4500), the detail as the reason, cut to fit.
pub(crate) fn error_close(err: &Error) -> CloseFrame {
    let code = match err.code() {
        c @ 0..=999 => ERROR_CLOSE_BASE + c,
        _ => ERROR_CLOSE_BASE + 500,
    };
    let mut reason = err.detail();
    if reason.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason = &reason[..end];
    }
    CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from(reason),
    }
}

/// The error a close frame carries, if it carries one: `4000 + code` is a
/// micro error; a close without a code, or a normal close, is none; any
/// other code is reported as the peer sent it.
pub(crate) fn close_error(frame: Option<&CloseFrame>, id: &str) -> Option<Error> {
    let frame = frame?;
    let code = u16::from(frame.code);
    let reason = frame.reason.as_str();
    match code {
        1000 => None,
        4000..=4999 => Some(Error::new(
            id.to_owned(),
            code - ERROR_CLOSE_BASE,
            reason.to_owned(),
        )),
        _ => Some(Error::unavailable(format!(
            "stream closed with code {code}{}{reason}",
            if reason.is_empty() { "" } else { ": " }
        ))),
    }
}

/// A stream of messages of type `T`, read with [`recv`](Self::recv) or as a
/// [`futures_util::Stream`].
///
/// It is what a client-streaming handler receives, what a server-streaming
/// handler returns (build one from any stream with [`Streaming::new`] or
/// from an iterator with [`Streaming::iter`]), what a server-streaming call
/// returns to the caller, and the receiving half of a split [`Stream`] or
/// [`ClientStream`](crate::client::ClientStream).
pub struct Streaming<T> {
    inner: Inbound<T>,
}

enum Inbound<T> {
    /// Frames from the peer, decoded with the stream's codec.
    Frames {
        frames: Frames,
        content_type: ContentType,
        done: bool,
    },
    /// Messages from a stream the user built.
    Local(BoxStream<'static, Result<T>>),
}

/// Where a stream's encoded messages come from: the server's reader or the
/// client's half of the socket, each in its own module.
pub(crate) trait FrameSource: Send + Sync + 'static {
    /// The next message; `None` is the end of the peer's direction.
    fn poll_frame(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Bytes>>>;

    /// The error for a message that does not decode.
    fn undecodable(&self, err: crate::codec::CodecError) -> Error;
}

/// Where a stream's encoded messages go.
pub(crate) trait FrameSink: Send + Sync + 'static {
    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<()>>;
    fn start_send(&mut self, message: Message) -> Result<()>;
    fn poll_flush(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<()>>;
}

/// A [`FrameSource`], boxed once per stream.
pub(crate) struct Frames(Box<dyn FrameSource>);

impl Frames {
    pub(crate) fn new(source: impl FrameSource) -> Self {
        Self(Box::new(source))
    }

    fn poll_frame(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Bytes>>> {
        self.0.poll_frame(cx)
    }

    fn undecodable(&self, err: crate::codec::CodecError) -> Error {
        self.0.undecodable(err)
    }
}

impl<T> fmt::Debug for Streaming<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.inner {
            Inbound::Frames { .. } => "socket",
            Inbound::Local(_) => "local",
        };
        f.debug_struct("Streaming")
            .field("source", &kind)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Streaming<T> {
    /// A stream of the items of `stream`; an `Err` item ends a stream a
    /// handler returns, closing it with that error.
    pub fn new<S>(stream: S) -> Self
    where
        S: futures_util::Stream<Item = Result<T>> + Send + 'static,
    {
        Self {
            inner: Inbound::Local(stream.boxed()),
        }
    }

    /// A stream of the values of `iter`.
    pub fn iter<I>(iter: I) -> Self
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        Self::new(futures_util::stream::iter(iter.into_iter().map(Ok)))
    }

    /// A stream that ends at once.
    pub fn empty() -> Self {
        Self::new(futures_util::stream::empty())
    }
}

impl<T> Streaming<T> {
    pub(crate) fn from_frames(frames: Frames, content_type: ContentType) -> Self {
        Self {
            inner: Inbound::Frames {
                frames,
                content_type,
                done: false,
            },
        }
    }
}

impl<T: DeserializeOwned> Streaming<T> {
    /// The next message; `None` once the other side has ended its
    /// direction.
    ///
    /// # Errors
    /// The error the other side ended the stream with (its code and
    /// detail), 400/500 for a message that does not decode, 408 past the
    /// stream's deadline, 503 if the connection broke. After an error the
    /// stream is over and returns `None`.
    pub async fn recv(&mut self) -> Result<Option<T>> {
        std::future::poll_fn(|cx| self.poll_recv(cx))
            .await
            .transpose()
    }

    fn poll_recv(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<Result<T>>> {
        match &mut self.inner {
            Inbound::Local(s) => s.poll_next_unpin(cx),
            Inbound::Frames {
                frames,
                content_type,
                done,
            } => {
                if *done {
                    return Poll::Ready(None);
                }
                let item = match ready!(frames.poll_frame(cx)) {
                    Some(Ok(bytes)) => Ok(match content_type.decode(&bytes) {
                        Ok(v) => v,
                        Err(e) => {
                            *done = true;
                            return Poll::Ready(Some(Err(frames.undecodable(e))));
                        }
                    }),
                    Some(Err(e)) => Err(e),
                    None => {
                        *done = true;
                        return Poll::Ready(None);
                    }
                };
                if item.is_err() {
                    *done = true;
                }
                Poll::Ready(Some(item))
            }
        }
    }
}

impl<T: DeserializeOwned> futures_util::Stream for Streaming<T> {
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<T>>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<T> Unpin for Streaming<T> {}

/// The sending half of a stream: [`send`](Self::send) messages of type
/// `T`, or use it as a [`futures_util::Sink`]. Closing it (or
/// [`close`](Self::close)) is the half-close: the other side's receive
/// ends, and this side can keep receiving.
pub struct Sender<T> {
    inner: Outbound,
    content_type: ContentType,
    closed: bool,
    _message: PhantomData<fn(T)>,
}

/// A [`FrameSink`], boxed once per stream.
pub(crate) struct Outbound(Box<dyn FrameSink>);

impl Outbound {
    pub(crate) fn new(sink: impl FrameSink) -> Self {
        Self(Box::new(sink))
    }

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        self.0.poll_ready(cx)
    }

    fn start_send(&mut self, message: Message) -> Result<()> {
        self.0.start_send(message)
    }

    fn poll_flush(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        self.0.poll_flush(cx)
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("content_type", &self.content_type)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl<T> Sender<T> {
    pub(crate) fn new(inner: Outbound, content_type: ContentType) -> Self {
        Self {
            inner,
            content_type,
            closed: false,
            _message: PhantomData,
        }
    }

    fn closed_error() -> Error {
        Error::bad_request("the stream is closed for sending")
    }

    fn poll_send_frame(
        &mut self,
        cx: &mut TaskContext<'_>,
        frame: &mut Option<Message>,
    ) -> Poll<Result<()>> {
        if frame.is_some() {
            ready!(self.inner.poll_ready(cx))?;
            let message = frame.take().expect("checked above");
            self.inner.start_send(message)?;
        }
        self.inner.poll_flush(cx)
    }

    /// Ends this direction: sends the empty frame. The other side's
    /// receive ends; this side can keep receiving. Closing twice is a
    /// no-op.
    ///
    /// # Errors
    /// 503 if the connection broke, 408 past the deadline.
    pub async fn close(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let mut frame = Some(data_frame(self.content_type, Bytes::new()));
        std::future::poll_fn(|cx| self.poll_send_frame(cx, &mut frame)).await
    }
}

impl<T: Serialize> Sender<T> {
    fn encode(&self, message: &T) -> Result<Message> {
        if self.closed {
            return Err(Self::closed_error());
        }
        let bytes = self
            .content_type
            .encode(message)
            .map_err(|e| Error::internal(e.to_string()).with_source(e))?;
        Ok(data_frame(self.content_type, bytes))
    }

    /// Sends one message and flushes it. Takes the message or a reference
    /// to it.
    ///
    /// # Errors
    /// 400 after [`close`](Self::close), 500 if the message does not
    /// encode, 503 if the connection broke (the other side's error, if it
    /// sent one, is what the receiving half returns next), 408 past the
    /// deadline.
    pub async fn send<M: Borrow<T>>(&mut self, message: M) -> Result<()> {
        let mut frame = Some(self.encode(message.borrow())?);
        std::future::poll_fn(|cx| self.poll_send_frame(cx, &mut frame)).await
    }
}

impl<T: Serialize> Sink<T> for Sender<T> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        self.get_mut().inner.poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: T) -> Result<()> {
        let this = self.get_mut();
        let frame = this.encode(&item)?;
        this.inner.start_send(frame)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        self.get_mut().inner.poll_flush(cx)
    }

    /// The half-close: sends the empty frame and flushes.
    fn poll_close(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if !this.closed {
            ready!(this.inner.poll_ready(cx))?;
            this.inner
                .start_send(data_frame(this.content_type, Bytes::new()))?;
            this.closed = true;
        }
        this.inner.poll_flush(cx)
    }
}

impl<T> Unpin for Sender<T> {}

/// A bidirectional stream as a handler sees it: receive `Req` messages,
/// send `Rsp` messages, both at once if it likes (see
/// [`split`](Self::split)).
///
/// When the handler returns `Ok`, the server ends its direction and closes
/// the socket; when it returns an error, the client's receive gets that
/// error. If the client goes away, the handler's future is dropped.
pub struct Stream<Req, Rsp> {
    context: Context,
    receiver: Streaming<Req>,
    sender: Sender<Rsp>,
}

impl<Req, Rsp> fmt::Debug for Stream<Req, Rsp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl<Req, Rsp> Stream<Req, Rsp> {
    /// A stream from its parts.
    pub fn from_parts(context: Context, receiver: Streaming<Req>, sender: Sender<Rsp>) -> Self {
        Self {
            context,
            receiver,
            sender,
        }
    }

    /// The context the stream was opened with: id, deadline, metadata.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// The two halves, to send and receive from different tasks.
    pub fn split(self) -> (Sender<Rsp>, Streaming<Req>) {
        (self.sender, self.receiver)
    }

    /// The context and the two halves.
    pub fn into_parts(self) -> (Context, Streaming<Req>, Sender<Rsp>) {
        (self.context, self.receiver, self.sender)
    }
}

impl<Req: DeserializeOwned, Rsp> Stream<Req, Rsp> {
    /// The next message from the client; `None` once it has half-closed.
    ///
    /// # Errors
    /// As [`Streaming::recv`].
    pub async fn recv(&mut self) -> Result<Option<Req>> {
        self.receiver.recv().await
    }
}

impl<Req, Rsp: Serialize> Stream<Req, Rsp> {
    /// Sends one message to the client.
    ///
    /// # Errors
    /// As [`Sender::send`].
    pub async fn send<M: Borrow<Rsp>>(&mut self, message: M) -> Result<()> {
        self.sender.send(message).await
    }
}

impl<Req: DeserializeOwned, Rsp> futures_util::Stream for Stream<Req, Rsp> {
    type Item = Result<Req>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Req>>> {
        self.get_mut().receiver.poll_recv(cx)
    }
}

impl<Req, Rsp: Serialize> Sink<Rsp> for Stream<Req, Rsp> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        Pin::new(&mut self.get_mut().sender).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Rsp) -> Result<()> {
        Pin::new(&mut self.get_mut().sender).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        Pin::new(&mut self.get_mut().sender).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        Pin::new(&mut self.get_mut().sender).poll_close(cx)
    }
}

impl<Req, Rsp> Unpin for Stream<Req, Rsp> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_close_codes_and_reasons() {
        let frame = error_close(&Error::not_found("no such thing"));
        assert_eq!(u16::from(frame.code), 4404);
        assert_eq!(frame.reason.as_str(), "no such thing");

        let long = "é".repeat(100);
        let frame = error_close(&Error::internal(long));
        assert_eq!(u16::from(frame.code), 4500);
        assert!(frame.reason.len() <= MAX_REASON);
        assert_eq!(frame.reason.len(), 122, "cut at a char boundary");

        let frame = error_close(&Error::new("x", 1200, "odd"));
        assert_eq!(u16::from(frame.code), 4500);
    }

    #[test]
    fn close_frames_to_errors() {
        assert!(close_error(None, "svc").is_none());
        let normal = CloseFrame {
            code: CloseCode::Normal,
            reason: Utf8Bytes::from_static(""),
        };
        assert!(close_error(Some(&normal), "svc").is_none());
        let err = close_error(Some(&error_close(&Error::timeout("too slow"))), "svc").unwrap();
        assert_eq!(
            (err.id(), err.code(), err.detail()),
            ("svc", 408, "too slow")
        );
        let away = CloseFrame {
            code: CloseCode::Away,
            reason: Utf8Bytes::from_static("bye"),
        };
        let err = close_error(Some(&away), "svc").unwrap();
        assert_eq!(err.code(), 503);
        assert_eq!(err.detail(), "stream closed with code 1001: bye");
    }

    #[test]
    fn frames_by_codec() {
        assert!(matches!(
            data_frame(ContentType::Json, Bytes::from_static(b"{}")),
            Message::Text(_)
        ));
        assert!(matches!(
            data_frame(ContentType::MsgPack, Bytes::from_static(b"\x80")),
            Message::Binary(_)
        ));
    }

    #[test]
    fn kinds_from_metadata() {
        use crate::registry::Endpoint;
        let plain = Endpoint::new("A.B", "X", "Y");
        assert_eq!(StreamKind::of(&plain), None);
        let bidi = plain.clone().with_metadata("stream", "true");
        assert_eq!(StreamKind::of(&bidi), Some(StreamKind::Bidirectional));
        let server = bidi.with_metadata("stream.kind", "server");
        assert_eq!(StreamKind::of(&server), Some(StreamKind::Server));
        for kind in [
            StreamKind::Bidirectional,
            StreamKind::Client,
            StreamKind::Server,
        ] {
            assert_eq!(StreamKind::of(&kind.mark(plain.clone())), Some(kind));
        }
    }
}
