//! The client side of streams: opening one (resolved, balanced, dialled
//! and retried like a call) and the typed handle it returns.

use std::borrow::Borrow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{Sink, SinkExt, StreamExt};
use http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderValue, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Sleep;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::{CallOptions, Client};
use crate::codec::{CodecError, ContentType};
use crate::stream::{
    Decoder, Encoder, FrameSink, FrameSource, Frames, Outbound, Sender, Socket, Streaming,
    close_error, serde_decoder, serde_encoder,
};
use crate::transport::{Failure, Reply, chain, reply_error};
use crate::{Error, Result};

/// A stream opened by a client: send `Req` messages, receive `Rsp`
/// messages, half-close with [`close_send`](Self::close_send) and keep
/// receiving. It is also a [`futures_util::Stream`] of replies and a
/// [`futures_util::Sink`] of requests; [`split`](Self::split) gives the two
/// halves to different tasks.
///
/// Dropping it closes the connection, and the server drops its handler.
pub struct ClientStream<Req, Rsp> {
    sender: Sender<Req>,
    receiver: Streaming<Rsp>,
}

impl<Req, Rsp> fmt::Debug for ClientStream<Req, Rsp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientStream")
            .field("sender", &self.sender)
            .field("receiver", &self.receiver)
            .finish()
    }
}

impl<Req, Rsp> ClientStream<Req, Rsp> {
    /// The two halves, to send and receive from different tasks.
    pub fn split(self) -> (Sender<Req>, Streaming<Rsp>) {
        (self.sender, self.receiver)
    }

    /// Ends the client's direction: the server's receive ends, and the
    /// replies keep coming until the server ends its own.
    ///
    /// # Errors
    /// 503 if the connection broke, 408 past the deadline.
    pub async fn close_send(&mut self) -> Result<()> {
        self.sender.close().await
    }
}

impl<Req, Rsp> ClientStream<Req, Rsp> {
    /// Sends one message (or a reference to one).
    ///
    /// # Errors
    /// As [`Sender::send`]: a server that ended the stream with an error
    /// makes `send` fail with 503, and [`recv`](Self::recv) returns the
    /// server's error.
    pub async fn send<M: Borrow<Req>>(&mut self, message: M) -> Result<()> {
        self.sender.send(message).await
    }
}

impl<Req, Rsp> ClientStream<Req, Rsp> {
    /// The next reply; `None` once the server has ended its direction.
    ///
    /// # Errors
    /// The error the server's handler returned (its code and detail), 408
    /// past the deadline, 500 for a reply that does not decode, 503 if the
    /// connection broke.
    pub async fn recv(&mut self) -> Result<Option<Rsp>> {
        self.receiver.recv().await
    }

    /// Half-closes and returns the one reply of a client-streaming
    /// endpoint.
    ///
    /// # Errors
    /// As [`recv`](Self::recv); 502 if the server ended without a reply.
    pub async fn close_and_recv(&mut self) -> Result<Rsp> {
        self.close_send().await?;
        self.recv().await?.ok_or_else(|| {
            Error::bad_gateway("the stream ended without a reply: expected exactly one")
        })
    }
}

impl<Req, Rsp> futures_util::Stream for ClientStream<Req, Rsp> {
    type Item = Result<Rsp>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Rsp>>> {
        self.get_mut().receiver.poll_next_unpin(cx)
    }
}

impl<Req, Rsp> Sink<Req> for ClientStream<Req, Rsp> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        self.get_mut().sender.poll_ready_unpin(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Req) -> Result<()> {
        self.get_mut().sender.start_send_unpin(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        self.get_mut().sender.poll_flush_unpin(cx)
    }

    /// The half-close, as [`close_send`](ClientStream::close_send).
    fn poll_close(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        self.get_mut().sender.poll_close_unpin(cx)
    }
}

impl<Req, Rsp> Unpin for ClientStream<Req, Rsp> {}

/// Who is at the other end, for error messages.
#[derive(Debug)]
struct Peer {
    service: String,
    endpoint: String,
    address: String,
}

impl Peer {
    fn broken(&self, err: &WsError) -> Error {
        match err {
            WsError::ConnectionClosed | WsError::AlreadyClosed => Error::unavailable(format!(
                "stream {} to {} at {} is closed",
                self.endpoint, self.service, self.address
            )),
            e => Error::unavailable(format!(
                "stream {} to {} at {}: {e}",
                self.endpoint, self.service, self.address
            )),
        }
        .with_id(self.service.clone())
    }

    fn expired(&self) -> Error {
        Error::timeout(format!("deadline exceeded on stream {}", self.endpoint))
            .with_id(self.service.clone())
    }
}

/// The deadline of one half, checked on each poll.
fn poll_expired(deadline: &mut Option<Pin<Box<Sleep>>>, cx: &mut TaskContext<'_>) -> bool {
    deadline
        .as_mut()
        .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready())
}

/// The receiving half of a client's socket.
pub(crate) struct ClientInbound {
    socket: SplitStream<Socket>,
    peer: Arc<Peer>,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl FrameSource for ClientInbound {
    fn poll_frame(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Bytes>>> {
        if poll_expired(&mut self.deadline, cx) {
            return Poll::Ready(Some(Err(self.peer.expired())));
        }
        loop {
            let bytes = match ready!(self.socket.poll_next_unpin(cx)) {
                Some(Ok(Message::Text(text))) => Bytes::from(text),
                Some(Ok(Message::Binary(bytes))) => bytes,
                Some(Ok(Message::Close(frame))) => {
                    return Poll::Ready(close_error(frame.as_ref(), &self.peer.service).map(Err));
                }
                Some(Ok(_)) => continue,
                Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
                    return Poll::Ready(Some(Err(Error::bad_gateway(format!(
                        "stream message of {size} bytes from {} is larger than the limit of {max_size} bytes",
                        self.peer.service
                    ))
                    .with_id(self.peer.service.clone()))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(self.peer.broken(&e)))),
                None => {
                    return Poll::Ready(Some(Err(self.peer.broken(&WsError::ConnectionClosed))));
                }
            };
            // The empty frame is the server's half-close.
            return Poll::Ready((!bytes.is_empty()).then_some(Ok(bytes)));
        }
    }

    fn undecodable(&self, err: CodecError) -> Error {
        Error::internal(format!(
            "stream message from {} {} does not decode: {err}",
            self.peer.service, self.peer.endpoint
        ))
        .with_id(self.peer.service.clone())
    }
}

/// The sending half of a client's socket.
pub(crate) struct ClientOutbound {
    sink: SplitSink<Socket, Message>,
    peer: Arc<Peer>,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl FrameSink for ClientOutbound {
    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        if poll_expired(&mut self.deadline, cx) {
            return Poll::Ready(Err(self.peer.expired()));
        }
        self.sink
            .poll_ready_unpin(cx)
            .map_err(|e| self.peer.broken(&e))
    }

    fn start_send(&mut self, message: Message) -> Result<()> {
        self.sink
            .start_send_unpin(message)
            .map_err(|e| self.peer.broken(&e))
    }

    fn poll_flush(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        if poll_expired(&mut self.deadline, cx) {
            return Poll::Ready(Err(self.peer.expired()));
        }
        self.sink
            .poll_flush_unpin(cx)
            .map_err(|e| self.peer.broken(&e))
    }
}

impl Client {
    /// Opens a stream to `endpoint` of `service`: a node is found, chosen
    /// and dialled as for [`call`](Client::call), and an opening that fails
    /// before the handler started is retried on another node.
    ///
    /// The stream has no deadline unless the options give one
    /// ([`CallOptions::timeout`] or a context with a deadline); the client's
    /// timeout bounds only the opening. The codec is the options' or the
    /// client's.
    ///
    /// # Errors
    /// As [`call`](Client::call): 503 when no node can be reached, 404 for an
    /// unknown endpoint, 400 when the endpoint is not a stream, 408 when
    /// the opening takes longer than the timeout.
    pub async fn stream<Req, Rsp>(
        &self,
        service: &str,
        endpoint: &str,
        options: CallOptions,
    ) -> Result<ClientStream<Req, Rsp>>
    where
        Req: Serialize,
        Rsp: DeserializeOwned,
    {
        let content_type = options.content_type.unwrap_or(self.inner.content_type);
        self.open_stream(
            service,
            endpoint,
            options,
            content_type,
            serde_encoder::<Req>,
            serde_decoder::<Rsp>,
        )
        .await
    }

    /// [`stream`](Client::stream) with the message codecs given, for
    /// generated clients. The codec is the options', else `preferred`
    /// (protobuf for a protobuf service), else the client's.
    #[doc(hidden)]
    pub async fn stream_encoded<Req, Rsp>(
        &self,
        service: &str,
        endpoint: &str,
        options: CallOptions,
        preferred: Option<ContentType>,
        encode: fn(ContentType, &Req) -> Result<Bytes, CodecError>,
        decode: fn(ContentType, &[u8]) -> Result<Rsp, CodecError>,
    ) -> Result<ClientStream<Req, Rsp>> {
        let content_type = options
            .content_type
            .or(preferred)
            .unwrap_or(self.inner.content_type);
        self.open_stream(service, endpoint, options, content_type, encode, decode)
            .await
    }

    async fn open_stream<Req, Rsp>(
        &self,
        service: &str,
        endpoint: &str,
        options: CallOptions,
        content_type: ContentType,
        encode: Encoder<Req>,
        decode: Decoder<Rsp>,
    ) -> Result<ClientStream<Req, Rsp>> {
        let started = Instant::now();
        let mut stream_deadline = options.timeout.map(|t| started + t);
        if let Some(parent) = options.context.as_ref().and_then(|c| c.deadline()) {
            stream_deadline = Some(stream_deadline.map_or(parent, |d| d.min(parent)));
        }
        let mut open_deadline = started + self.inner.timeout;
        if let Some(d) = stream_deadline {
            open_deadline = open_deadline.min(d);
        }
        let attempt = super::attempt::Attempt::Open {
            deadline: stream_deadline,
        };
        let target = super::attempt::Target::new(service, endpoint)?;
        let outcome = self
            .attempts(
                &target,
                content_type,
                &attempt,
                &options,
                (started, open_deadline),
            )
            .await?;
        let super::attempt::Outcome::Socket(socket, address) = outcome else {
            unreachable!("an opening yields a socket");
        };
        let peer = Arc::new(Peer {
            service: service.to_owned(),
            endpoint: endpoint.to_owned(),
            address,
        });
        let sleep = || stream_deadline.map(|d| Box::pin(tokio::time::sleep_until(d.into())));
        let (sink, source) = (*socket).split();
        let sender = Sender::new(
            Outbound::new(ClientOutbound {
                sink,
                peer: peer.clone(),
                deadline: sleep(),
            }),
            content_type,
            encode,
        );
        let receiver = Streaming::from_frames(
            Frames::new(ClientInbound {
                socket: source,
                peer,
                deadline: sleep(),
            }),
            content_type,
            decode,
        );
        Ok(ClientStream { sender, receiver })
    }

    /// Sends the upgrade request for a stream and completes the WebSocket
    /// handshake.
    pub(super) async fn upgrade(
        &self,
        mut parts: http::request::Parts,
        service: &str,
        address: &str,
    ) -> Result<Socket, Failure> {
        let key = generate_key();
        let headers = &mut parts.headers;
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        headers.insert(
            SEC_WEBSOCKET_KEY,
            HeaderValue::from_str(&key).expect("base64 is a valid header value"),
        );
        let transport_error = |e: &(dyn std::error::Error + 'static)| {
            Failure::Transport(Error::unavailable(format!(
                "opening a stream to {service} at {address}: {}",
                chain(e)
            )))
        };
        let limit = self.inner.max_response_size;
        let reply = self
            .inner
            .transport
            .send(parts, Bytes::new())
            .await
            .map_err(|e| transport_error(&*e))?;
        finish_upgrade(reply, &key, limit, service, address).await
    }
}

/// Checks the reply to an upgrade request and turns the connection into a
/// WebSocket.
async fn finish_upgrade(
    response: Reply,
    key: &str,
    limit: usize,
    service: &str,
    address: &str,
) -> Result<Socket, Failure> {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, bytes) = response.read(limit, service, address).await?;
        return Err(Failure::Reply(reply_error(
            &parts, &bytes, service, address,
        )));
    }
    let accepted = response
        .headers()
        .get(SEC_WEBSOCKET_ACCEPT)
        .is_some_and(|v| v.as_bytes() == derive_accept_key(key.as_bytes()).as_bytes());
    if !accepted {
        return Err(Failure::Reply(Error::bad_gateway(format!(
            "{service} at {address} answered the stream upgrade without a valid Sec-WebSocket-Accept"
        ))));
    }
    let upgraded = response.upgrade().await.map_err(|e| {
        Failure::Transport(Error::unavailable(format!(
            "opening a stream to {service} at {address}: {e}"
        )))
    })?;
    let config = crate::stream::socket_config(limit);
    Ok(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, Some(config)).await)
}

/// A server-streaming call: waits for the stream to open, sends the one
/// request (if any), half-closes and returns the replies.
#[doc(hidden)]
pub async fn server_streaming<Req, Rsp>(
    opening: impl Future<Output = Result<ClientStream<Req, Rsp>>>,
    request: Option<&Req>,
) -> Result<Streaming<Rsp>> {
    let mut stream = opening.await?;
    if let Some(request) = request {
        stream.send(request).await?;
    }
    stream.close_send().await?;
    Ok(stream.split().1)
}
