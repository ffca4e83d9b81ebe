//! The server side of streams: the WebSocket upgrade on `GET /`, and one
//! task per open stream that runs the handler beside a reader and a writer.

use std::borrow::Cow;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use futures_util::future::FusedFuture;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use http::header::{CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{HeaderMap, HeaderValue, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::{Notify, mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::{Frames, Sender, Socket, Stream, Streaming};
use crate::codec::ContentType;
use crate::metadata::Metadata;
use crate::server::rpc::{self, MICRO_ID};
use crate::server::{Route, Shared};
use crate::{Context, Error, Result};

/// Messages the reader may hold for a handler that has not asked for them
/// yet; beyond that the reader stops reading and TCP pushes back.
const INBOUND_BUFFER: usize = 32;

/// Messages a handler may queue before `send` waits for the writer.
const OUTBOUND_BUFFER: usize = 32;

/// How long the end of a stream may take: writing what is queued, the
/// close frame, and the client's close in reply.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// One stream as a handler receives it, from
/// [`Handler::stream`](crate::server::Handler::stream): the context of the
/// upgrade request, the codec, and the two directions.
pub struct StreamCall {
    context: Context,
    content_type: ContentType,
    inbound: Inbound,
    outbound: Outbound,
}

impl std::fmt::Debug for StreamCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamCall")
            .field("context", &self.context)
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

impl StreamCall {
    /// The context of the upgrade request: id, deadline, metadata.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// The codec of both directions.
    pub fn content_type(&self) -> ContentType {
        self.content_type
    }

    /// The typed bidirectional stream.
    pub fn into_stream<Req, Rsp>(self) -> Stream<Req, Rsp> {
        let (context, receiver, sender) = self.into_parts();
        Stream::from_parts(context, receiver, sender)
    }

    /// The context, the messages from the client, and the sender of
    /// messages to it.
    pub fn into_parts<Req, Rsp>(self) -> (Context, Streaming<Req>, Sender<Rsp>) {
        (
            self.context,
            Streaming::from_frames(Frames::Server(self.inbound), self.content_type),
            Sender::new(super::Outbound::Server(self.outbound), self.content_type),
        )
    }
}

/// What the reader hands the handler.
enum Frame {
    Data(Bytes),
    /// The client's half-close.
    End,
}

/// The handler's end of the reader's channel.
pub(crate) struct Inbound {
    rx: mpsc::Receiver<Frame>,
}

impl Inbound {
    pub(super) fn poll_frame(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<Result<Bytes>>> {
        Poll::Ready(match std::task::ready!(self.rx.poll_recv(cx)) {
            Some(Frame::Data(bytes)) => Some(Ok(bytes)),
            Some(Frame::End) => None,
            // The reader stopped without a half-close: the stream is ending
            // and this handler is about to be dropped.
            None => Some(Err(Error::unavailable(
                "the stream ended before the client half-closed it",
            ))),
        })
    }
}

/// The handler's end of the writer's channel.
pub(crate) struct Outbound {
    tx: futures_channel::mpsc::Sender<Message>,
}

fn writer_gone() -> Error {
    Error::unavailable("the stream is closed: the client went away or the stream ended")
}

impl Outbound {
    pub(super) fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        self.tx.poll_ready(cx).map_err(|_| writer_gone())
    }

    pub(super) fn start_send(&mut self, message: Message) -> Result<()> {
        self.tx.start_send(message).map_err(|_| writer_gone())
    }

    pub(super) fn poll_flush(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        self.tx.poll_flush_unpin(cx).map_err(|_| writer_gone())
    }
}

/// The open streams of a server, so that a graceful stop can wait for them
/// and then end the rest.
#[derive(Debug)]
pub(crate) struct Streams {
    open: AtomicUsize,
    idle: Notify,
    /// Set when the grace period is over: every stream still open ends
    /// with 503.
    closing: watch::Sender<bool>,
}

impl Default for Streams {
    fn default() -> Self {
        Self {
            open: AtomicUsize::new(0),
            idle: Notify::new(),
            closing: watch::Sender::new(false),
        }
    }
}

impl Streams {
    fn enter(self: &Arc<Self>) -> Open {
        self.open.fetch_add(1, Ordering::SeqCst);
        Open(self.clone())
    }

    /// The number of open streams.
    pub(crate) fn len(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Waits until no stream is open.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.len() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Ends every open stream with 503, and any opened from now on.
    pub(crate) fn close_all(&self) {
        self.closing.send_replace(true);
    }
}

/// One open stream, counted until dropped.
struct Open(Arc<Streams>);

impl Drop for Open {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Serves `GET /`: a WebSocket upgrade opens a stream.
pub(crate) async fn serve(State(shared): State<Arc<Shared>>, mut req: Request) -> Response {
    let (id, id_header) = rpc::request_id(req.headers());
    let mut response = match accept(&shared, &mut req, id) {
        Ok(response) => response,
        Err(err) => {
            let upgrade_required = err.code() == 426;
            let mut response = rpc::error_response(&err.or_id(&shared.name));
            if upgrade_required {
                response
                    .headers_mut()
                    .insert(UPGRADE, HeaderValue::from_static("websocket"));
            }
            response
        }
    };
    response.headers_mut().insert(MICRO_ID.clone(), id_header);
    response
}

/// Whether a comma-separated header holds `token`, case-insensitively.
fn has_token(headers: &HeaderMap, name: &http::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    })
}

/// A query parameter, percent-decoded.
fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<Cow<'a, str>> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| percent_decode(value))
    })
}

fn percent_decode(value: &str) -> Cow<'_, str> {
    if !value.contains(['%', '+']) {
        return Cow::Borrowed(value);
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Checks the upgrade request and starts the stream's task; the response
/// is the `101` that completes the handshake.
fn accept(shared: &Arc<Shared>, req: &mut Request, id: String) -> Result<Response> {
    let headers = req.headers();
    if !has_token(headers, &UPGRADE, "websocket") || !has_token(headers, &CONNECTION, "upgrade") {
        return Err(Error::new(
            "",
            426,
            "GET / opens a stream: send a WebSocket upgrade (Upgrade: websocket), or call endpoints with POST /",
        ));
    }
    if headers
        .get(http::header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v != "13")
    {
        return Err(Error::bad_request(
            "unsupported or missing Sec-WebSocket-Version: expected 13",
        ));
    }
    let key = headers
        .get(SEC_WEBSOCKET_KEY)
        .ok_or_else(|| Error::bad_request("missing Sec-WebSocket-Key header"))?;
    let accept_key = derive_accept_key(key.as_bytes());
    if !shared.ready.load(Ordering::Relaxed) {
        return Err(Error::unavailable(format!(
            "service \"{}\" is shutting down",
            shared.name
        )));
    }

    let query = req.uri().query();
    let endpoint = rpc::endpoint_header(headers)
        .map(Cow::Borrowed)
        .or_else(|| query_param(query, "endpoint"))
        .ok_or_else(|| {
            Error::bad_request(
                "missing endpoint: set the Micro-Endpoint header or ?endpoint=Type.Method",
            )
        })?;
    let Some(route) = shared.endpoints.get(&*endpoint) else {
        return Err(rpc::unknown_endpoint(shared, &endpoint));
    };
    if route.stream.is_none() {
        return Err(Error::bad_request(format!(
            "endpoint {endpoint} is not a stream: call it with POST /"
        )));
    }
    let content_type = match headers.get(CONTENT_TYPE) {
        Some(v) => ContentType::for_request(v.to_str().ok()),
        None => ContentType::for_request(query_param(query, "content_type").as_deref()),
    }
    .map_err(|e| Error::unsupported_media_type(e.to_string()))?;
    let deadline = rpc::deadline(headers, Instant::now())?;
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return Err(Error::bad_request(
            "this connection cannot be upgraded: open streams over HTTP/1.1",
        ));
    };

    let mut headers = std::mem::take(req.headers_mut());
    for name in [
        SEC_WEBSOCKET_KEY,
        http::header::SEC_WEBSOCKET_VERSION,
        http::header::SEC_WEBSOCKET_EXTENSIONS,
        http::header::SEC_WEBSOCKET_PROTOCOL,
    ] {
        headers.remove(name);
    }
    let context = Context::from_parts(
        id,
        deadline,
        Metadata::from_headers(headers),
        Some(route.name.clone()),
    );
    let stream = Pending {
        route: route.clone(),
        context,
        content_type,
        deadline,
        max_message_size: shared.max_body_size,
        service: shared.name.clone(),
        open: shared.streams.enter(),
        closing: shared.streams.closing.subscribe(),
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .max_message_size(Some(stream.max_message_size))
                    .max_frame_size(Some(stream.max_message_size));
                let socket = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                stream.run(socket).await;
            }
            Err(e) => tracing::debug!(error = %e, "stream upgrade failed"),
        }
    });

    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept_key).expect("base64 is a valid header value"),
    );
    h.insert(CONTENT_TYPE, content_type.header_value());
    Ok(response)
}

/// A stream whose upgrade is under way.
struct Pending {
    route: Route,
    context: Context,
    content_type: ContentType,
    deadline: Option<Instant>,
    max_message_size: usize,
    service: String,
    open: Open,
    closing: watch::Receiver<bool>,
}

/// How the reader stopped.
enum ReadEnd {
    /// The client closed or the connection broke.
    Gone,
    /// The client broke the protocol: end the stream with this error.
    Failed(Error),
}

impl Pending {
    /// Runs the handler until it returns, the client goes away, the
    /// deadline passes or the server stops; then ends the stream.
    async fn run(self, socket: Socket) {
        let Pending {
            route,
            context,
            content_type,
            deadline,
            service,
            open,
            mut closing,
            ..
        } = self;
        let (sink, source) = socket.split();
        let (in_tx, in_rx) = mpsc::channel(INBOUND_BUFFER);
        let (out_tx, out_rx) = futures_channel::mpsc::channel(OUTBOUND_BUFFER);
        let call = StreamCall {
            context,
            content_type,
            inbound: Inbound { rx: in_rx },
            outbound: Outbound { tx: out_tx.clone() },
        };
        let endpoint = route.name.clone();
        let mut handling = Box::pin(
            AssertUnwindSafe(route.handler.clone().stream(route.index, call)).catch_unwind(),
        );
        let mut reading = Box::pin(read(source, in_tx).fuse());
        let mut writing = Box::pin(write(sink, out_rx, content_type).fuse());
        let expired = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => std::future::pending().await,
            }
        };
        let stopping = async {
            if closing.wait_for(|closing| *closing).await.is_err() {
                std::future::pending::<()>().await;
            }
        };

        let outcome: Option<Result<()>> = tokio::select! {
            outcome = &mut handling => Some(match outcome {
                Ok(result) => result,
                Err(panic) => {
                    let message = rpc::panic_message(&*panic);
                    tracing::error!(endpoint = &*endpoint, message, "stream handler panicked");
                    Err(Error::internal(format!("handler {endpoint} panicked: {message}")))
                }
            }),
            end = &mut reading => match end {
                ReadEnd::Gone => None,
                ReadEnd::Failed(err) => Some(Err(err)),
            },
            _ = &mut writing => None,
            () = expired => Some(Err(Error::timeout(format!("deadline exceeded serving {endpoint}")))),
            () = stopping => Some(Err(Error::unavailable(format!(
                "service \"{service}\" is shutting down"
            )))),
        };
        // Cancels the handler if it is still running.
        drop(handling);

        let frame = match &outcome {
            None => {
                tracing::debug!(endpoint = &*endpoint, "stream client went away");
                None
            }
            Some(Ok(())) => Some(CloseFrame {
                code: CloseCode::Normal,
                reason: Utf8Bytes::from_static(""),
            }),
            Some(Err(err)) => {
                tracing::debug!(endpoint = &*endpoint, error = %err, "stream ended with an error");
                Some(super::error_close(err))
            }
        };
        let ending = async {
            if !writing.is_terminated() {
                let mut tx = out_tx;
                // After whatever the handler queued.
                if tx.send(Message::Close(frame)).await.is_ok() {
                    let _ = (&mut writing).await;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, ending).await;
        // The stream is over for a graceful stop once its close is out.
        drop(open);
        if !reading.is_terminated() {
            // The client's close in reply. Closing the connection before it
            // arrives could reset it and lose the replies still in flight.
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, &mut reading).await;
        }
    }
}

/// Reads the client's frames into the handler's channel until the client
/// closes or breaks the protocol.
async fn read(mut source: SplitStream<Socket>, tx: mpsc::Sender<Frame>) -> ReadEnd {
    let mut tx = Some(tx);
    let mut half_closed = false;
    while let Some(next) = source.next().await {
        let bytes = match next {
            Ok(Message::Text(text)) => Bytes::from(text),
            Ok(Message::Binary(bytes)) => bytes,
            Ok(Message::Close(_)) => return ReadEnd::Gone,
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
            Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size })) => {
                return ReadEnd::Failed(Error::payload_too_large(format!(
                    "stream message of {size} bytes is larger than the limit of {max_size} bytes"
                )));
            }
            Err(WsError::Protocol(e)) => {
                return ReadEnd::Failed(Error::bad_request(format!("websocket protocol: {e}")));
            }
            Err(_) => return ReadEnd::Gone,
        };
        if half_closed {
            return ReadEnd::Failed(Error::bad_request(
                "message after the half-close: an empty frame ends the client's messages",
            ));
        }
        let frame = if bytes.is_empty() {
            half_closed = true;
            Frame::End
        } else {
            Frame::Data(bytes)
        };
        // A handler that dropped its receiver gets nothing more, but the
        // reader still watches for the client's close.
        if let Some(sender) = &tx {
            if sender.send(frame).await.is_err() {
                tx = None;
            }
        }
        if half_closed {
            tx = None;
        }
    }
    ReadEnd::Gone
}

/// Writes the handler's messages, batching what has queued up into one
/// flush, until a close frame has gone out.
async fn write(
    mut sink: SplitSink<Socket, Message>,
    mut rx: futures_channel::mpsc::Receiver<Message>,
    content_type: ContentType,
) -> std::result::Result<(), WsError> {
    let mut ended = false;
    while let Some(mut message) = rx.next().await {
        loop {
            match message {
                Message::Close(frame) => {
                    let normal = frame.as_ref().is_some_and(|f| f.code == CloseCode::Normal);
                    if normal && !ended {
                        sink.feed(super::data_frame(content_type, Bytes::new()))
                            .await?;
                    }
                    sink.feed(Message::Close(frame)).await?;
                    return sink.flush().await;
                }
                Message::Text(ref t) if t.is_empty() => ended = true,
                Message::Binary(ref b) if b.is_empty() => ended = true,
                _ => {}
            }
            sink.feed(message).await?;
            match rx.try_recv() {
                Ok(next) => message = next,
                _ => break,
            }
        }
        sink.flush().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters() {
        let q = Some("endpoint=Chat.Talk&content_type=application%2Fmsgpack&x");
        assert_eq!(query_param(q, "endpoint").as_deref(), Some("Chat.Talk"));
        assert_eq!(
            query_param(q, "content_type").as_deref(),
            Some("application/msgpack")
        );
        assert_eq!(query_param(q, "x").as_deref(), Some(""));
        assert_eq!(query_param(q, "y"), None);
        assert_eq!(query_param(None, "endpoint"), None);
        assert_eq!(percent_decode("a+b%2"), "a b%2");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn tokens() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert!(has_token(&h, &CONNECTION, "upgrade"));
        assert!(!has_token(&h, &UPGRADE, "websocket"));
    }
}
