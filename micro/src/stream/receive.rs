//! The receiving half of a stream.

use std::fmt;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde::de::DeserializeOwned;

use super::frame::FrameSource;
use crate::codec::{CodecError, ContentType};
use crate::{Error, Result};

/// A stream of messages of type `T`, read with [`recv`](Self::recv) or as a
/// [`futures_util::Stream`].
///
/// It is what a client-streaming handler receives, what a server-streaming
/// handler returns (build one from any stream with [`Streaming::new`] or
/// from an iterator with [`Streaming::iter`]), what a server-streaming call
/// returns to the caller, and the receiving half of a split [`Stream`](super::Stream) or
/// [`ClientStream`](crate::client::ClientStream).
pub struct Streaming<T> {
    inner: Inbound<T>,
}

enum Inbound<T> {
    /// Frames from the peer, decoded with the stream's codec.
    Frames {
        frames: Frames,
        content_type: ContentType,
        decode: Decoder<T>,
        done: bool,
    },
    /// Messages from a stream the user built.
    Local(BoxStream<'static, Result<T>>),
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

/// How a stream's messages become values: serde's codecs, or what
/// `#[service(protobuf)]` picks for a protobuf message.
pub(crate) type Decoder<T> = fn(ContentType, &[u8]) -> Result<T, CodecError>;

/// The [`Decoder`] of a serde type.
pub(crate) fn serde_decoder<T: DeserializeOwned>(
    content_type: ContentType,
    body: &[u8],
) -> Result<T, CodecError> {
    content_type.decode(body)
}

impl<T> Streaming<T> {
    pub(crate) fn from_frames(
        frames: Frames,
        content_type: ContentType,
        decode: Decoder<T>,
    ) -> Self {
        Self {
            inner: Inbound::Frames {
                frames,
                content_type,
                decode,
                done: false,
            },
        }
    }

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

    pub(super) fn poll_recv(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<Result<T>>> {
        match &mut self.inner {
            Inbound::Local(s) => s.poll_next_unpin(cx),
            Inbound::Frames {
                frames,
                content_type,
                decode,
                done,
            } => {
                if *done {
                    return Poll::Ready(None);
                }
                let item = match ready!(frames.poll_frame(cx)) {
                    Some(Ok(bytes)) => Ok(match decode(*content_type, &bytes) {
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

impl<T> futures_util::Stream for Streaming<T> {
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<T>>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<T> Unpin for Streaming<T> {}
