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

mod frame;
mod receive;
mod send;

use std::borrow::Borrow;
use std::fmt;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use futures_util::Sink;

pub(crate) use frame::{
    FrameSink, FrameSource, Socket, close_error, data_frame, error_close, socket_config,
};
pub use receive::Streaming;
pub(crate) use receive::{Decoder, Frames, serde_decoder};
pub use send::Sender;
#[cfg(feature = "protobuf")]
pub(crate) use send::encode_error;
pub(crate) use send::{Encoder, EncoderInto, Outbound, serde_encoder};

use crate::{Context, Error, Result};

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

impl<Req, Rsp> Stream<Req, Rsp> {
    /// The next message from the client; `None` once it has half-closed.
    ///
    /// # Errors
    /// As [`Streaming::recv`].
    pub async fn recv(&mut self) -> Result<Option<Req>> {
        self.receiver.recv().await
    }
}

impl<Req, Rsp> Stream<Req, Rsp> {
    /// Sends one message to the client.
    ///
    /// # Errors
    /// As [`Sender::send`].
    pub async fn send<M: Borrow<Rsp>>(&mut self, message: M) -> Result<()> {
        self.sender.send(message).await
    }
}

impl<Req, Rsp> futures_util::Stream for Stream<Req, Rsp> {
    type Item = Result<Req>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Req>>> {
        self.get_mut().receiver.poll_recv(cx)
    }
}

impl<Req, Rsp> Sink<Rsp> for Stream<Req, Rsp> {
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
