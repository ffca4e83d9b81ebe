//! `POST /`: one request, one reply.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};
use http_body::Body as _;
use http_body_util::BodyExt;

use super::{Call, Shared};
use crate::codec::ContentType;
use crate::metadata::Metadata;
use crate::trace::Trace;
use crate::wire::{
    MICRO_ID, MICRO_QUEUE, MICRO_TOPIC, X_MICRO_QUEUE, X_MICRO_TOPIC, deadline, endpoint_header,
    error_response, header, panic_message, request_id,
};
use crate::{Context, Error, Result};
use tracing::Instrument;

/// Serves `POST /`.
pub(crate) async fn serve(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let id = request_id(req.headers());
    let is_event = header(req.headers(), &[&MICRO_TOPIC, &X_MICRO_TOPIC]).is_some();
    let result = if is_event {
        receive(&shared, req, &id).await.map(|()| None)
    } else {
        dispatch(&shared, req, id.clone()).await.map(Some)
    };
    let mut response = match result {
        Ok(Some((content_type, body))) => {
            let mut r = crate::wire::response(Body::from(body));
            r.headers_mut()
                .insert(CONTENT_TYPE, content_type.header_value());
            r
        }
        Ok(None) => crate::wire::response(Body::empty()),
        Err(err) => error_response(&err.or_id(&shared.name)),
    };
    response.headers_mut().insert(MICRO_ID.clone(), id);
    if !shared.ready.load(Ordering::Relaxed) {
        // Draining: tell HTTP/1 clients not to reuse this connection.
        response
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn dispatch(shared: &Shared, req: Request, id: HeaderValue) -> Result<(ContentType, Bytes)> {
    if !shared.ready.load(Ordering::Relaxed) {
        return Err(Error::unavailable(format!(
            "service \"{}\" is shutting down",
            shared.name
        )));
    }
    let now = Instant::now();
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;

    // The header, or the path of `POST /Type.Method`.
    let in_path = parts.uri.path().trim_start_matches('/');
    let endpoint = endpoint_header(headers)
        .or_else(|| (!in_path.is_empty()).then_some(in_path))
        .ok_or_else(|| Error::bad_request("missing Micro-Endpoint header: expected Type.Method"))?;
    let Some(route) = shared.endpoints.get(endpoint) else {
        return Err(unknown_endpoint(shared, endpoint));
    };
    if route.stream.is_some() {
        return Err(Error::bad_request(format!(
            "endpoint {endpoint} is a stream: open it with a WebSocket upgrade (GET / with Upgrade: websocket)"
        )));
    }
    let served = serve_route(shared, route, parts, body, id, now).await;
    #[cfg(feature = "metrics")]
    if let Some(m) = &route.metrics {
        m.call(
            served.as_ref().map_or_else(Error::code, |_| 200),
            now.elapsed(),
        );
    }
    served
}

/// Serves a call to `route`: who calls, the body, the handler.
async fn serve_route(
    shared: &Shared,
    route: &super::Route,
    mut parts: http::request::Parts,
    body: Body,
    id: HeaderValue,
    now: Instant,
) -> Result<(ContentType, Bytes)> {
    // Who is calling, before the body is read.
    let credentials = credentials(shared, route, &mut parts).await?;
    let headers = &parts.headers;

    let content_type = ContentType::for_request(header(headers, &[&CONTENT_TYPE]))
        .map_err(|e| Error::unsupported_media_type(e.to_string()))?;
    let reply_content_type = header(headers, &[&http::header::ACCEPT])
        .and_then(ContentType::from_accept)
        .unwrap_or(content_type);
    let deadline = deadline(headers, now)?;
    let body = read_request(headers, body, shared, deadline).await?;
    let call = Incoming {
        headers: parts.headers,
        credentials,
        id,
        deadline,
    };
    invoke(shared, route, call, body, content_type, reply_content_type).await
}

/// Who is calling `route`, when auth is on; checked before the body is
/// read.
pub(crate) async fn credentials(
    shared: &Shared,
    route: &super::Route,
    parts: &mut http::request::Parts,
) -> Result<Option<crate::auth::Credentials>> {
    match &shared.guard {
        Some(guard) => {
            let peer = parts.extensions.get::<crate::auth::Peer>();
            Ok(Some(
                guard
                    .check(&route.name, &route.rules, &mut parts.headers, peer)
                    .await?,
            ))
        }
        None => Ok(None),
    }
}

/// What a call brings besides its body, whichever protocol carried it.
pub(crate) struct Incoming {
    pub(crate) headers: HeaderMap,
    pub(crate) credentials: Option<crate::auth::Credentials>,
    pub(crate) id: HeaderValue,
    pub(crate) deadline: Option<Instant>,
}

impl Incoming {
    /// The handler's context, and the span it runs in: `micro.call`, or
    /// `micro.stream` for a stream, whose context also watches for a
    /// graceful stop.
    pub(crate) fn into_context(
        self,
        shared: &Shared,
        route: &super::Route,
        stream: bool,
    ) -> (Context, tracing::Span) {
        let span = if stream {
            tracing::info_span!(
                "micro.stream",
                service = %shared.name,
                endpoint = %route.name,
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            )
        } else {
            tracing::info_span!(
                "micro.call",
                service = %shared.name,
                endpoint = %route.name,
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            )
        };
        let trace = Trace::serving(&self.headers).in_span(&span);
        let mut context = Context::from_parts(
            self.id,
            self.deadline,
            Metadata::from_headers(self.headers),
            Some(route.name.clone()),
        );
        if stream {
            context = context.with_stopping(shared.streams.stopping_signal());
        }
        let context = context
            .with_platform(shared.platform.clone())
            .with_credentials(self.credentials)
            .with_trace(trace);
        (context, span)
    }
}

/// Runs `route`'s handler on one request: its context, its span, its
/// deadline, a panic caught as a 500.
pub(crate) async fn invoke(
    shared: &Shared,
    route: &super::Route,
    incoming: Incoming,
    body: Bytes,
    content_type: ContentType,
    reply_content_type: ContentType,
) -> Result<(ContentType, Bytes)> {
    let deadline = incoming.deadline;
    let (context, span) = incoming.into_context(shared, route, false);
    let call = Call::new(context, body, content_type, reply_content_type);
    let running = AssertUnwindSafe(route.handler.clone().call(route.index, call))
        .catch_unwind()
        .instrument(span);
    let endpoint = &*route.name;
    let outcome = match deadline {
        Some(deadline) => within(deadline, running)
            .await
            .map_err(|_| Error::timeout(format!("deadline exceeded serving {endpoint}")))?,
        None => running.await,
    };
    match outcome {
        Ok(reply) => reply.map(super::Reply::into_parts),
        Err(panic) => {
            let message = panic_message(&*panic);
            tracing::error!(endpoint, message, "handler panicked");
            Err(Error::internal(format!(
                "handler {endpoint} panicked: {message}"
            )))
        }
    }
}

/// An event (`POST /` with `Micro-Topic`), for the broker's local
/// subscribers.
async fn receive(shared: &Shared, req: Request, id: &HeaderValue) -> Result<()> {
    if !shared.ready.load(Ordering::Relaxed) {
        return Err(Error::unavailable(format!(
            "service \"{}\" is shutting down",
            shared.name
        )));
    }
    let (mut parts, body) = req.into_parts();
    let topic = header(&parts.headers, &[&MICRO_TOPIC, &X_MICRO_TOPIC])
        .unwrap_or_default()
        .to_owned();
    // Who is publishing, before the body is read: the rules name the
    // resource `topic:<topic>`.
    if let Some(guard) = &shared.guard {
        guard
            .check(
                &format!("topic:{topic}"),
                &[],
                &mut parts.headers,
                parts.extensions.get::<crate::auth::Peer>(),
            )
            .await?;
    }
    let headers = &parts.headers;
    let queue = header(headers, &[&MICRO_QUEUE, &X_MICRO_QUEUE]).map(str::to_owned);
    let content_type = ContentType::for_request(header(headers, &[&CONTENT_TYPE]))
        .map_err(|e| Error::unsupported_media_type(e.to_string()))?;
    let deadline = deadline(headers, Instant::now())?;
    let body = read_request(headers, body, shared, deadline).await?;
    let mut message = crate::broker::Message::new(topic, content_type, body);
    message.id = id.to_str().unwrap_or_default().to_owned();
    message.metadata = Metadata::from_headers(parts.headers);
    shared.broker.receive(message, queue).await
}

/// The 400 or 404 for an endpoint that is not served here.
pub(crate) fn unknown_endpoint(shared: &Shared, endpoint: &str) -> Error {
    let mut parts = endpoint.split('.');
    let (Some(ty), Some(method), None) = (parts.next(), parts.next(), parts.next()) else {
        return Error::bad_request(format!(
            "invalid endpoint \"{endpoint}\": expected Type.Method"
        ));
    };
    if ty.is_empty() || method.is_empty() {
        return Error::bad_request(format!(
            "invalid endpoint \"{endpoint}\": expected Type.Method"
        ));
    }
    if shared.handlers.iter().any(|h| h == ty) {
        Error::not_found(format!("endpoint {endpoint} not found"))
    } else {
        Error::not_found(format!(
            "endpoint {endpoint} not found: service \"{}\" has no handler {ty}",
            shared.name
        ))
    }
}

/// How much of a refused body is still read and thrown away, so that the
/// caller, still sending, is not reset before it reads the 413.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;

/// How long a refused body is read and thrown away at the most.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// [`read_body`] with the server's own limit and body timeout.
async fn read_request(
    headers: &HeaderMap,
    body: Body,
    shared: &Shared,
    deadline: Option<Instant>,
) -> Result<Bytes> {
    read_body(
        headers,
        body,
        shared.max_body_size,
        shared.body_timeout,
        deadline,
    )
    .await
}

/// Reads the whole body, refusing more than `limit` bytes, within
/// the request's deadline or, without one, `body_timeout`.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    body_timeout: Duration,
    deadline: Option<Instant>,
) -> Result<Bytes> {
    let too_large = || {
        Error::payload_too_large(format!(
            "request body is larger than the limit of {limit} bytes"
        ))
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        drain(body);
        return Err(too_large());
    }
    let (until, what) = match deadline {
        Some(deadline) => (deadline, "the request's deadline passed"),
        None => (
            Instant::now() + body_timeout,
            "the server's body timeout passed",
        ),
    };
    let mut body = body;
    let collected = within(until, collect(&mut body, limit)).await;
    match collected {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(Collect::TooLarge)) => {
            drain(body);
            Err(too_large())
        }
        Ok(Err(Collect::Failed(e))) => {
            Err(Error::bad_request(format!("reading request body: {e}")))
        }
        Err(_) => Err(Error::timeout(format!(
            "request body not complete when {what}"
        ))),
    }
}

/// `work` if it finishes by `deadline`. A timer is set only if the first
/// poll leaves it pending: a small body that came with its head, or a
/// handler that does not wait, costs no timer.
pub(crate) async fn within<F: Future>(
    deadline: Instant,
    work: F,
) -> std::result::Result<F::Output, tokio::time::error::Elapsed> {
    let mut work = std::pin::pin!(work);
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(work.as_mut().poll(cx))).await;
    if let std::task::Poll::Ready(done) = first {
        return Ok(done);
    }
    tokio::time::timeout_at(deadline.into(), work).await
}

enum Collect {
    TooLarge,
    Failed(axum::Error),
}

/// The body's bytes, up to `limit`; the body is left where it stopped.
async fn collect(body: &mut Body, limit: usize) -> std::result::Result<Bytes, Collect> {
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Collect::Failed)?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(Collect::TooLarge);
            }
            if out.is_empty() && body.is_end_stream() {
                return Ok(data);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// Reads what is left of a refused body in the background, up to a bound,
/// and throws it away. Closing the connection while the caller is still
/// sending would reset it, and a reset can destroy the error reply before
/// the caller reads it: its client would report a broken connection (and
/// retry) instead of the 413.
fn drain(mut body: Body) {
    if body.is_end_stream() {
        return;
    }
    tokio::spawn(async move {
        let mut left = DRAIN_LIMIT;
        let reading = async {
            while let Some(Ok(frame)) = body.frame().await {
                let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                match left.checked_sub(n) {
                    Some(l) => left = l,
                    None => return,
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIME, reading).await;
    });
}

/// Anything but `POST /` or `GET /` on `/`.
pub(crate) async fn method_not_allowed(
    State(shared): State<Arc<Shared>>,
    req: Request,
) -> Response {
    let err = Error::method_not_allowed(format!(
        "{} / is not supported: call endpoints with POST /, open streams with a WebSocket upgrade on GET /",
        req.method()
    ))
    .or_id(&shared.name);
    let mut r = error_response(&err);
    r.headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static("GET, POST"));
    r
}

/// Any path the server does not serve.
pub(crate) async fn no_route(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let err = Error::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
    .or_id(&shared.name);
    error_response(&err)
}
