//! The server side of streams: the WebSocket upgrade on `GET /`, and one
//! task per open stream that runs the handler beside a reader and a writer.

use std::borrow::Cow;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::FusedFuture;
use http::header::{CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{HeaderMap, HeaderValue, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::{Notify, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

mod socket;

pub(crate) use socket::{Conn, Inbound, Outbound};

use super::{Route, Shared, rpc};
use tracing::Instrument;

use crate::code;
use crate::codec::ContentType;
use crate::stream::{
    Decoder, Encoder, EncoderInto, Frames, Outbound as Sink, Sender, Socket, Stream, Streaming,
    data_frame, error_close, serde_decoder, serde_encoder, socket_config,
};
use crate::wire::{self, MICRO_ID};
use crate::{Context, Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How long the end of a stream may take: writing what is queued, the
/// close frame, and the client's close in reply.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The most bytes thrown away after a stream failed on what the client
/// sent, while waiting for the client to close.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// One stream as a handler receives it, from
/// [`Handler::stream`](crate::server::Handler::stream): the context of the
/// upgrade request, the codec, and the two directions.
pub struct StreamCall {
    context: Context,
    content_type: ContentType,
    inbound: Frames,
    outbound: Sink,
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

    /// A call on a stream's frames, whichever protocol carries them.
    pub(crate) fn new(
        context: Context,
        content_type: ContentType,
        inbound: Frames,
        outbound: Sink,
    ) -> Self {
        Self {
            context,
            content_type,
            inbound,
            outbound,
        }
    }

    /// The typed bidirectional stream.
    pub fn into_stream<Req, Rsp>(self) -> Stream<Req, Rsp>
    where
        Req: DeserializeOwned,
        Rsp: Serialize,
    {
        let (context, receiver, sender) = self.into_parts();
        Stream::from_parts(context, receiver, sender)
    }

    /// The context, the messages from the client, and the sender of
    /// messages to it.
    pub fn into_parts<Req, Rsp>(self) -> (Context, Streaming<Req>, Sender<Rsp>)
    where
        Req: DeserializeOwned,
        Rsp: Serialize,
    {
        self.into_parts_encoded(serde_decoder::<Req>, serde_encoder::<Rsp>)
    }

    /// [`into_parts_encoded`](Self::into_parts_encoded) for a protobuf
    /// service: its replies can also be encoded straight into a gRPC
    /// stream's buffer.
    #[doc(hidden)]
    pub fn into_parts_protobuf<Req, Rsp>(
        self,
        decode: Decoder<Req>,
        encode: Encoder<Rsp>,
        encode_into: EncoderInto<Rsp>,
    ) -> (Context, Streaming<Req>, Sender<Rsp>) {
        let (context, requests, sender) = self.into_parts_encoded(decode, encode);
        (context, requests, sender.with_encode_into(encode_into))
    }

    /// [`into_parts`](Self::into_parts) with the message codecs given:
    /// what `#[service(protobuf)]` uses for protobuf messages.
    #[doc(hidden)]
    pub fn into_parts_encoded<Req, Rsp>(
        self,
        decode: Decoder<Req>,
        encode: Encoder<Rsp>,
    ) -> (Context, Streaming<Req>, Sender<Rsp>) {
        (
            self.context,
            Streaming::from_frames(self.inbound, self.content_type, decode),
            Sender::new(self.outbound, self.content_type, encode),
        )
    }
}

/// The open streams of a server, so that a graceful stop can wait for them
/// and then end the rest.
#[derive(Debug)]
pub(crate) struct Streams {
    open: AtomicUsize,
    /// The most streams open at once.
    max: usize,
    /// Ends a stream whose client has sent nothing for this long.
    idle_timeout: Option<Duration>,
    idle: Notify,
    /// Set when a graceful stop begins, for handlers that watch
    /// `Context::stopping`.
    stopping: watch::Sender<bool>,
    /// Set when the grace period is over: every stream still open ends
    /// with 503.
    closing: watch::Sender<bool>,
}

impl Streams {
    pub(crate) fn new(max: usize, idle_timeout: Option<Duration>) -> Self {
        Self {
            open: AtomicUsize::new(0),
            max,
            idle_timeout,
            idle: Notify::new(),
            stopping: watch::Sender::new(false),
            closing: watch::Sender::new(false),
        }
    }

    /// The most streams open at once.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// What a stream's context watches for a graceful stop.
    pub(crate) fn stopping_signal(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Set when the grace period is over: a stream still open ends.
    pub(crate) fn closing_signal(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Counts a new stream, unless `max` are open.
    pub(crate) fn try_enter(self: &Arc<Self>) -> Option<Open> {
        self.open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        Some(Open(self.clone()))
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

    /// Tells the handlers that watch `Context::stopping` that a graceful
    /// stop has begun.
    pub(crate) fn stopping(&self) {
        self.stopping.send_replace(true);
    }

    /// Ends every open stream with 503, and any opened from now on.
    pub(crate) fn close_all(&self) {
        self.closing.send_replace(true);
    }
}

/// One open stream, counted until dropped.
pub(crate) struct Open(Arc<Streams>);

impl Drop for Open {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Serves `GET /`: a WebSocket upgrade opens a stream.
pub(crate) async fn serve(State(shared): State<Arc<Shared>>, mut req: Request) -> Response {
    let id = wire::request_id(req.headers());
    let mut response = match accept(&shared, &mut req, id.clone()).await {
        Ok(response) => response,
        Err(err) => {
            let upgrade_required = err.code() == code::UPGRADE_REQUIRED;
            let mut response = wire::error_response(&err.or_id(&shared.name));
            if upgrade_required {
                response
                    .headers_mut()
                    .insert(UPGRADE, HeaderValue::from_static("websocket"));
            }
            response
        }
    };
    response.headers_mut().insert(MICRO_ID.clone(), id);
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
async fn accept(shared: &Arc<Shared>, req: &mut Request, id: HeaderValue) -> Result<Response> {
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
    let endpoint = wire::endpoint_header(headers)
        .map(Cow::Borrowed)
        .or_else(|| query_param(query, "endpoint"))
        .ok_or_else(|| {
            Error::bad_request(
                "missing endpoint: set the Micro-Endpoint header or ?endpoint=Type.Method",
            )
        })?
        .into_owned();
    let Some(route) = shared.endpoints.get(&endpoint) else {
        return Err(rpc::unknown_endpoint(shared, &endpoint));
    };
    if route.stream.is_none() {
        return Err(Error::bad_request(format!(
            "endpoint {endpoint} is not a stream: call it with POST /"
        )));
    }
    // Who is opening it, before the upgrade. A browser cannot set headers
    // on a WebSocket, so the token may come as `?token=`.
    let credentials = match &shared.guard {
        Some(guard) => {
            let token = query_param(query, "token").map(Cow::into_owned);
            let peer = req.extensions().get::<crate::auth::Peer>().cloned();
            let headers = req.headers_mut();
            if let Some(token) = token
                && !headers.contains_key(http::header::AUTHORIZATION)
                && let Ok(value) = HeaderValue::try_from(format!("Bearer {token}"))
            {
                headers.insert(http::header::AUTHORIZATION, value);
            }
            Some(
                guard
                    .check(&route.name, &route.rules, headers, peer.as_ref())
                    .await?,
            )
        }
        None => None,
    };
    let headers = req.headers();
    let query = req.uri().query();
    let content_type = match headers.get(CONTENT_TYPE) {
        Some(v) => ContentType::for_request(v.to_str().ok()),
        None => ContentType::for_request(query_param(query, "content_type").as_deref()),
    }
    .map_err(|e| Error::unsupported_media_type(e.to_string()))?;
    let deadline = wire::deadline(headers, Instant::now())?;
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
    let incoming = rpc::Incoming {
        headers,
        credentials,
        id,
        deadline,
    };
    let (context, span) = incoming.into_context(shared, route, true);
    let Some(open) = shared.streams.try_enter() else {
        return Err(Error::unavailable(format!(
            "service \"{}\" has {} streams open, its limit",
            shared.name,
            shared.streams.max()
        )));
    };
    let stream = Pending {
        #[cfg(feature = "metrics")]
        counted: route
            .metrics
            .as_ref()
            .map(crate::metrics::EndpointMetrics::stream),
        route: route.clone(),
        context,
        content_type,
        deadline,
        max_message_size: shared.max_body_size,
        service: shared.name.clone(),
        idle_timeout: shared.streams.idle_timeout,
        open,
        closing: shared.streams.closing_signal(),
    };
    tokio::spawn(
        async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let config = socket_config(stream.max_message_size);
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
        }
        .instrument(span),
    );

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
    /// Its place in `micro_streams_open`, while it lives.
    #[cfg(feature = "metrics")]
    #[allow(dead_code)]
    counted: Option<crate::metrics::OpenStream>,
    route: Route,
    context: Context,
    content_type: ContentType,
    deadline: Option<Instant>,
    max_message_size: usize,
    service: String,
    idle_timeout: Option<Duration>,
    open: Open,
    closing: watch::Receiver<bool>,
}

/// How the reader stopped.
enum ReadEnd {
    /// The client closed or the connection broke.
    Gone,
    /// The client broke the protocol or a limit: end the stream with
    /// this close.
    Failed(CloseFrame),
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
            idle_timeout,
            open,
            mut closing,
            ..
        } = self;
        let conn = Conn::new(socket);
        let call = StreamCall::new(
            context,
            content_type,
            Frames::new(Inbound { conn: conn.clone() }),
            Sink::new(Outbound { conn: conn.clone() }),
        );
        let endpoint = route.name.clone();
        let mut handling = Box::pin(
            AssertUnwindSafe(route.handler.clone().stream(route.index, call)).catch_unwind(),
        );
        let mut reading = std::future::poll_fn(|cx| conn.poll_read(cx)).fuse();
        let expired = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => std::future::pending().await,
            }
        };
        let idle = async {
            let Some(limit) = idle_timeout else {
                return std::future::pending().await;
            };
            loop {
                let last = conn.last_read();
                if last.elapsed() >= limit {
                    return;
                }
                tokio::time::sleep_until((last + limit).into()).await;
            }
        };
        let stopping = async {
            if closing.wait_for(|closing| *closing).await.is_err() {
                std::future::pending::<()>().await;
            }
        };

        let mut violation = None;
        let outcome: Option<Result<()>> = tokio::select! {
            // The reader first: what it reads reaches the handler in the
            // same pass.
            biased;
            end = &mut reading => match end {
                ReadEnd::Gone => None,
                ReadEnd::Failed(close) => {
                    tracing::debug!(endpoint = &*endpoint, code = u16::from(close.code), reason = %close.reason, "stream client broke a rule");
                    violation = Some(close);
                    None
                }
            },
            outcome = &mut handling => Some(match outcome {
                Ok(result) => result,
                Err(panic) => {
                    let message = wire::panic_message(&*panic);
                    tracing::error!(endpoint = &*endpoint, message, "stream handler panicked");
                    Err(Error::internal(format!("handler {endpoint} panicked: {message}")))
                }
            }),
            () = expired => Some(Err(Error::timeout(format!("deadline exceeded serving {endpoint}")))),
            () = idle => Some(Err(Error::timeout(format!(
                "stream {endpoint} idle: nothing from the client for {:?}",
                idle_timeout.unwrap_or_default()
            )))),
            () = stopping => Some(Err(Error::unavailable(format!(
                "service \"{service}\" is shutting down"
            )))),
        };
        // Cancels the handler if it is still running.
        drop(handling);

        let mut pending = Vec::with_capacity(2);
        match &outcome {
            None if violation.is_some() => {
                pending.extend(violation.take().map(|close| Message::Close(Some(close))));
            }
            None => tracing::debug!(endpoint = &*endpoint, "stream client went away"),
            Some(Ok(())) => {
                if !conn.sent_end() {
                    pending.push(data_frame(content_type, Bytes::new()));
                }
                pending.push(Message::Close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: Utf8Bytes::from_static(""),
                })));
            }
            Some(Err(err)) => {
                tracing::debug!(endpoint = &*endpoint, error = %err, "stream ended with an error");
                pending.push(Message::Close(Some(error_close(err))));
            }
        }
        let failed = !pending.is_empty() && outcome.is_none();
        let finishing = std::future::poll_fn(|cx| conn.poll_finish(cx, &mut pending));
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, finishing).await;
        // The stream is over for a graceful stop once its close is out.
        drop(open);
        if failed {
            let (mut shut, mut left) = (false, DRAIN_LIMIT);
            let draining = std::future::poll_fn(|cx| conn.poll_drain(cx, &mut shut, &mut left));
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, draining).await;
        } else if !reading.is_terminated() {
            // The client's close in reply. Closing the connection before it
            // arrives could reset it and lose the replies still in flight.
            conn.stop_wanting();
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, &mut reading).await;
        }
    }
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
