//! The sending half of a stream.

use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use bytes::{Bytes, BytesMut};
use futures_util::Sink;
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;

use super::frame::{FrameSink, data_frame};
use crate::codec::{CodecError, ContentType};
use crate::{Error, Result};

/// The sending half of a stream: [`send`](Self::send) messages of type
/// `T`, or use it as a [`futures_util::Sink`]. Closing it (or
/// [`close`](Self::close)) is the half-close: the other side's receive
/// ends, and this side can keep receiving.
pub struct Sender<T> {
    inner: Outbound,
    content_type: ContentType,
    encode: Encoder<T>,
    /// Encodes into the sink's own buffer, when the sink has one.
    encode_into: Option<EncoderInto<T>>,
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

    fn start_send_into(
        &mut self,
        encode: &mut dyn FnMut(&mut BytesMut) -> Result<(), CodecError>,
    ) -> Option<Result<()>> {
        self.0.start_send_into(encode)
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

/// How a stream's values become messages: serde's codecs, or what
/// `#[service(protobuf)]` picks for a protobuf message.
pub(crate) type Encoder<T> = fn(ContentType, &T) -> Result<Bytes, CodecError>;

/// An empty protobuf message as a WebSocket stream carries it: one field
/// that no message declares (number 536870911, the highest, a varint 0),
/// which every protobuf decoder skips. Zero bytes would be the half-close.
#[cfg(feature = "protobuf")]
const EMPTY_PROTOBUF: &[u8] = &[0xF8, 0xFF, 0xFF, 0xFF, 0x0F, 0x00];

/// The error for a message that does not encode.
pub(crate) fn encode_error(e: CodecError) -> Error {
    match e {
        // A codec the type lacks is the caller's choice: a 415.
        e @ (CodecError::Unsupported(_) | CodecError::Unavailable { .. }) => Error::from(e),
        e => Error::internal(e.to_string()).with_source(e),
    }
}

/// An [`Encoder`] that writes at the end of a buffer instead.
pub(crate) type EncoderInto<T> = fn(ContentType, &T, &mut BytesMut) -> Result<(), CodecError>;

/// The [`Encoder`] of a serde type.
pub(crate) fn serde_encoder<T: Serialize>(
    content_type: ContentType,
    value: &T,
) -> Result<Bytes, CodecError> {
    content_type.encode(value)
}

impl<T> Sender<T> {
    pub(crate) fn new(inner: Outbound, content_type: ContentType, encode: Encoder<T>) -> Self {
        Self {
            inner,
            content_type,
            encode,
            encode_into: None,
            closed: false,
            _message: PhantomData,
        }
    }

    /// Encodes into the sink's own buffer when it has one (gRPC), with
    /// `encode_into`.
    pub(crate) fn with_encode_into(mut self, encode_into: EncoderInto<T>) -> Self {
        self.encode_into = Some(encode_into);
        self
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

    fn encode(&self, message: &T) -> Result<Message> {
        if self.closed {
            return Err(Self::closed_error());
        }
        let bytes = (self.encode)(self.content_type, message).map_err(encode_error)?;
        #[cfg(feature = "protobuf")]
        if bytes.is_empty() && self.content_type == ContentType::Protobuf {
            // Protobuf's empty message is zero bytes, which on a WebSocket
            // would be the end of the direction.
            return Ok(data_frame(
                self.content_type,
                Bytes::from_static(EMPTY_PROTOBUF),
            ));
        }
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
        if let Some(encode_into) = self.encode_into {
            if self.closed {
                return Err(Self::closed_error());
            }
            std::future::poll_fn(|cx| self.inner.poll_ready(cx)).await?;
            let content_type = self.content_type;
            let value = message.borrow();
            let sent = self
                .inner
                .start_send_into(&mut |buf| encode_into(content_type, value, buf));
            if let Some(sent) = sent {
                sent?;
                return std::future::poll_fn(|cx| self.inner.poll_flush(cx)).await;
            }
        }
        let mut frame = Some(self.encode(message.borrow())?);
        std::future::poll_fn(|cx| self.poll_send_frame(cx, &mut frame)).await
    }
}

impl<T> Sink<T> for Sender<T> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        self.get_mut().inner.poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: T) -> Result<()> {
        let this = self.get_mut();
        if let (Some(encode_into), false) = (this.encode_into, this.closed) {
            let content_type = this.content_type;
            let sent = this
                .inner
                .start_send_into(&mut |buf| encode_into(content_type, &item, buf));
            if let Some(sent) = sent {
                return sent;
            }
        }
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
