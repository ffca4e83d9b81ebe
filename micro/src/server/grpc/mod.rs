//! gRPC on the service's own port: `POST /<package>.<Service>/<Method>`
//! with `content-type: application/grpc`, over HTTP/2 (h2c, or h2 with
//! TLS). Unary endpoints and the three stream shapes map to gRPC's four
//! kinds of method; errors travel as `grpc-status` and `grpc-message`;
//! `grpc-timeout` is the deadline; metadata is the call's metadata. The
//! server also answers `grpc.health.v1.Health` and server reflection. See
//! docs/wire.md, "gRPC".

mod frame;
mod health;
mod reflection;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use futures_util::FutureExt;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue};
use tracing::Instrument;

pub(crate) use reflection::Descriptors;

use super::rpc::{self, Incoming};
use super::{Route, Shared, StreamCall};
use crate::codec::ContentType;
use crate::wire::{self, request_id};
use crate::{Error, Result};

use frame::{GrpcBody, Out};

static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// gRPC status codes, as the gRPC spec numbers them.
pub(crate) mod status {
    pub(crate) const CANCELLED: u32 = 1;
    pub(crate) const UNKNOWN: u32 = 2;
    pub(crate) const INVALID_ARGUMENT: u32 = 3;
    pub(crate) const DEADLINE_EXCEEDED: u32 = 4;
    pub(crate) const NOT_FOUND: u32 = 5;
    pub(crate) const PERMISSION_DENIED: u32 = 7;
    pub(crate) const RESOURCE_EXHAUSTED: u32 = 8;
    pub(crate) const FAILED_PRECONDITION: u32 = 9;
    pub(crate) const ABORTED: u32 = 10;
    pub(crate) const UNIMPLEMENTED: u32 = 12;
    pub(crate) const INTERNAL: u32 = 13;
    pub(crate) const UNAVAILABLE: u32 = 14;
    pub(crate) const UNAUTHENTICATED: u32 = 16;
}

/// The gRPC status of a micro error code.
pub(crate) fn status_of(code: u16) -> u32 {
    match code {
        400 | 415 | 422 => status::INVALID_ARGUMENT,
        401 => status::UNAUTHENTICATED,
        403 => status::PERMISSION_DENIED,
        404 => status::NOT_FOUND,
        405 | 501 => status::UNIMPLEMENTED,
        408 | 504 => status::DEADLINE_EXCEEDED,
        409 => status::ABORTED,
        // Go Micro's "already exists" has no code of its own; 412 is a
        // precondition.
        412 => status::FAILED_PRECONDITION,
        413 | 429 => status::RESOURCE_EXHAUSTED,
        499 => status::CANCELLED,
        500 => status::INTERNAL,
        502 | 503 => status::UNAVAILABLE,
        _ => status::UNKNOWN,
    }
}

/// The value of `grpc-message`: `detail` percent-encoded as the spec
/// asks (every byte outside printable ASCII, and `%`).
fn percent_encode(detail: &str) -> HeaderValue {
    let mut out = String::with_capacity(detail.len());
    for b in detail.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The trailers of a call that ended with `result`.
fn trailers(result: &Result<()>) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(2);
    match result {
        Ok(()) => {
            map.insert(GRPC_STATUS.clone(), HeaderValue::from_static("0"));
        }
        Err(err) => {
            map.insert(
                GRPC_STATUS.clone(),
                HeaderValue::from(status_of(err.code())),
            );
            map.insert(GRPC_MESSAGE.clone(), percent_encode(err.detail()));
        }
    }
    map
}

/// Which codec a gRPC content type names, `None` for one that is not gRPC
/// or that no codec serves.
fn codec(headers: &HeaderMap) -> Option<ContentType> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    let sub = essence
        .get(..16)
        .filter(|p| p.eq_ignore_ascii_case("application/grpc"))
        .map(|_| &essence[16..])?;
    match sub.to_ascii_lowercase().as_str() {
        "" | "+proto" => Some(ContentType::Protobuf),
        "+json" => Some(ContentType::Json),
        "+msgpack" => Some(ContentType::MsgPack),
        _ => None,
    }
}

/// The content type of a response in `codec`.
fn content_type(codec: ContentType) -> HeaderValue {
    HeaderValue::from_static(match codec {
        ContentType::Json => "application/grpc+json",
        ContentType::MsgPack => "application/grpc+msgpack",
        _ => "application/grpc",
    })
}

/// A response of `codec` with `body`.
fn response(codec: ContentType, body: GrpcBody) -> Response {
    let mut r = Response::new(Body::new(body));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, content_type(codec));
    h.insert(
        frame::GRPC_ACCEPT_ENCODING.clone(),
        HeaderValue::from_static(frame::ACCEPTED),
    );
    r
}

/// A call that ends before any message: the status in the headers, no
/// body (gRPC's "trailers-only" response).
fn trailers_only(codec: ContentType, err: &Error) -> Response {
    let mut r = response(
        codec,
        GrpcBody::Once {
            data: None,
            trailers: None,
        },
    );
    r.headers_mut().extend(trailers(&Err(err.clone())));
    r
}

/// `grpc-timeout`: digits and a unit (H, M, S, m, u, n).
fn timeout(headers: &HeaderMap) -> Result<Option<Duration>> {
    let Some(value) = headers.get(&GRPC_TIMEOUT) else {
        return Ok(None);
    };
    let invalid = || {
        Error::bad_request(format!(
            "invalid grpc-timeout {value:?}: expected up to 8 digits and a unit (H, M, S, m, u, n)"
        ))
    };
    let text = value.to_str().map_err(|_| invalid())?;
    if text.len() < 2 || text.len() > 9 {
        return Err(invalid());
    }
    let (digits, unit) = text.split_at(text.len() - 1);
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    Ok(Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return Err(invalid()),
    }))
}

/// The deadline of a gRPC call: `grpc-timeout`, else micro's `Timeout`.
fn deadline(headers: &HeaderMap, now: Instant) -> Result<Option<Instant>> {
    match timeout(headers)? {
        Some(t) => Ok(Some(now + t)),
        None => wire::deadline(headers, now),
    }
}

/// Serves `POST /{service}/{method}`: a gRPC call.
pub(crate) async fn serve(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let Some(codec) = codec(req.headers()) else {
        let path = req.uri().path().trim_start_matches('/');
        if !shared.grpc.contains_key(path) && builtin(path).is_none() {
            return rpc::no_route(State(shared), req).await;
        }
        let err = Error::unsupported_media_type(format!(
            "POST /{path} is a gRPC call: send content-type application/grpc (or application/grpc+json); \
             micro's HTTP calls are POST / or POST /Type.Method"
        ))
        .or_id(&shared.name);
        return wire::error_response(&err);
    };
    let now = Instant::now();
    match start(&shared, req, codec, now).await {
        Ok(response) => response,
        Err(err) => trailers_only(codec, &err),
    }
}

async fn start(
    shared: &Arc<Shared>,
    req: Request,
    codec: ContentType,
    now: Instant,
) -> Result<Response> {
    let path = req.uri().path().trim_start_matches('/');
    let encoding = frame::Encoding::of(req.headers())?;
    let route = shared.grpc.get(path);
    if route.is_none() {
        if let Some(builtin) = builtin(path) {
            return builtin.serve(shared, req, codec, encoding).await;
        }
    }
    if !shared.ready.load(Ordering::Relaxed) {
        return Err(Error::unavailable(format!(
            "service \"{}\" is shutting down",
            shared.name
        )));
    }
    let Some(route) = route else {
        return Err(unknown(shared, path));
    };
    let (mut parts, body) = req.into_parts();
    let credentials = rpc::credentials(shared, route, &mut parts).await?;
    let deadline = deadline(&parts.headers, now)?;
    let id = request_id(&parts.headers);
    let replies = encoding.for_replies(&parts.headers);
    let incoming = Incoming {
        headers: parts.headers,
        credentials,
        id,
        deadline,
    };
    if route.stream.is_some() {
        let mut response = open_stream(shared, route, incoming, body, (codec, encoding), replies)?;
        compressed(&mut response, replies);
        return Ok(response);
    }
    let served = unary(shared, route, incoming, body, (codec, encoding)).await;
    #[cfg(feature = "metrics")]
    if let Some(m) = &route.metrics {
        m.call(
            served.as_ref().map_or_else(Error::code, |_| 200),
            now.elapsed(),
        );
    }
    let reply = served?;
    let mut response = response(
        codec,
        GrpcBody::Once {
            data: Some(frame::encode_as(&reply, replies)),
            trailers: Some(trailers(&Ok(()))),
        },
    );
    compressed(&mut response, replies);
    Ok(response)
}

/// Says in `response`'s headers how its messages are compressed.
fn compressed(response: &mut Response, replies: frame::Encoding) {
    if let Some(value) = replies.header() {
        response
            .headers_mut()
            .insert(frame::GRPC_ENCODING.clone(), value);
    }
}

/// UNIMPLEMENTED, saying whether the service or the method is unknown.
fn unknown(shared: &Shared, path: &str) -> Error {
    let (service, method) = path.split_once('/').unwrap_or((path, ""));
    let known = shared
        .grpc
        .keys()
        .any(|k| k.split_once('/').is_some_and(|(s, _)| s == service));
    let detail = if known {
        format!("unknown method {method} for service {service}")
    } else {
        format!(
            "unknown service {service}: service \"{}\" serves no gRPC service of that name",
            shared.name
        )
    };
    Error::new("", 501, detail)
}

/// A unary call: one message in, one out.
async fn unary(
    shared: &Shared,
    route: &Route,
    incoming: Incoming,
    body: Body,
    (codec, encoding): (ContentType, frame::Encoding),
) -> Result<bytes::Bytes> {
    let limit = shared.max_body_size;
    let raw = rpc::read_body(
        &HeaderMap::new(),
        body,
        limit + frame::PREFIX,
        shared.body_timeout,
        incoming.deadline,
    )
    .await?;
    let message = frame::single(raw, limit, encoding)?;
    let (_, reply) = rpc::invoke(shared, route, incoming, message, codec, codec).await?;
    Ok(reply)
}

/// Opens a stream: the handler runs in a task of its own, the response
/// carries what it sends, and the trailers its outcome.
fn open_stream(
    shared: &Arc<Shared>,
    route: &Route,
    incoming: Incoming,
    body: Body,
    (codec, encoding): (ContentType, frame::Encoding),
    replies: frame::Encoding,
) -> Result<Response> {
    let Some(open) = shared.streams.try_enter() else {
        return Err(Error::unavailable(format!(
            "service \"{}\" has {} streams open, its limit",
            shared.name,
            shared.streams.max()
        )));
    };
    let deadline = incoming.deadline;
    let (context, span) = incoming.into_context(shared, route, true);
    let out = Arc::new(Out::default());
    out.hold(open);
    let call = StreamCall::new(
        context,
        codec,
        crate::stream::Frames::new(frame::Source::new(body, shared.max_body_size, encoding)),
        crate::stream::Outbound::new(frame::Sink::new(out.clone(), replies)),
    );
    #[cfg(feature = "metrics")]
    let counted = route
        .metrics
        .as_ref()
        .map(crate::metrics::EndpointMetrics::stream);
    let route = route.clone();
    let mut closing = shared.streams.closing_signal();
    let service = shared.name.clone();
    let sending = out.clone();
    // The handler runs inside the response body, polled by the task that
    // sends it: no task of its own, no hop between tasks per message.
    let running = Box::pin(
        async move {
            #[cfg(feature = "metrics")]
            let _counted = counted;
            let endpoint = route.name.clone();
            let handling =
                AssertUnwindSafe(route.handler.clone().stream(route.index, call)).catch_unwind();
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
            // The body owns this future: if the client goes away, the
            // body is dropped and the handler with it.
            let result = tokio::select! {
                biased;
                outcome = handling => match outcome {
                    Ok(result) => result,
                    Err(panic) => {
                        let message = wire::panic_message(&*panic);
                        tracing::error!(endpoint = &*endpoint, message, "stream handler panicked");
                        Err(Error::internal(format!("handler {endpoint} panicked: {message}")))
                    }
                },
                () = expired => Err(Error::timeout(format!("deadline exceeded serving {endpoint}"))),
                () = stopping => Err(Error::unavailable(format!(
                    "service \"{service}\" is shutting down"
                ))),
            };
            if let Err(err) = &result {
                tracing::debug!(endpoint = &*endpoint, error = %err, "gRPC stream ended with an error");
            }
            sending.finish(trailers(&result));
        }
        .instrument(span),
    );
    Ok(long(response(
        codec,
        GrpcBody::Driven {
            out,
            handler: Some(running),
        },
    )))
}

/// `response`, marked so that its connection stays busy while its body,
/// the rest of a stream, is sent.
fn long(mut response: Response) -> Response {
    response
        .extensions_mut()
        .insert(crate::server::conn::LongBody);
    response
}

/// The services every server answers unless one of its own claims the
/// name.
enum Builtin {
    HealthCheck,
    HealthWatch,
    Reflection,
}

fn builtin(path: &str) -> Option<Builtin> {
    Some(match path {
        "grpc.health.v1.Health/Check" => Builtin::HealthCheck,
        "grpc.health.v1.Health/Watch" => Builtin::HealthWatch,
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        | "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo" => Builtin::Reflection,
        _ => return None,
    })
}

impl Builtin {
    async fn serve(
        self,
        shared: &Arc<Shared>,
        req: Request,
        codec: ContentType,
        encoding: frame::Encoding,
    ) -> Result<Response> {
        if codec != ContentType::Protobuf {
            return Err(Error::unsupported_media_type(
                "the gRPC health and reflection services speak protobuf only",
            ));
        }
        let body = req.into_body();
        match self {
            Builtin::HealthCheck => health::check(shared, body, encoding).await,
            Builtin::HealthWatch => health::watch(shared, body, encoding).await,
            Builtin::Reflection => Ok(reflection::serve(shared, body, encoding)),
        }
    }
}

/// The gRPC path of a protobuf service's endpoint (without its leading
/// slash): `<package>.<Service>/<Method>`.
pub(crate) fn path_of(endpoint: &crate::registry::Endpoint) -> Option<String> {
    let (_, method) = endpoint.name.split_once('.')?;
    let service = endpoint.metadata.get(crate::codec::PROTOBUF_METADATA)?;
    Some(format!("{service}/{method}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_grpc_statuses() {
        assert_eq!(status_of(404), status::NOT_FOUND);
        assert_eq!(status_of(400), status::INVALID_ARGUMENT);
        assert_eq!(status_of(408), status::DEADLINE_EXCEEDED);
        assert_eq!(status_of(503), status::UNAVAILABLE);
        assert_eq!(status_of(401), status::UNAUTHENTICATED);
        assert_eq!(status_of(403), status::PERMISSION_DENIED);
        assert_eq!(status_of(500), status::INTERNAL);
        assert_eq!(status_of(501), status::UNIMPLEMENTED);
        assert_eq!(status_of(413), status::RESOURCE_EXHAUSTED);
        assert_eq!(status_of(409), status::ABORTED);
        assert_eq!(status_of(418), status::UNKNOWN);
    }

    #[test]
    fn timeouts() {
        let mut h = HeaderMap::new();
        assert_eq!(timeout(&h).unwrap(), None);
        for (text, want) in [
            ("1H", Duration::from_secs(3600)),
            ("2M", Duration::from_secs(120)),
            ("3S", Duration::from_secs(3)),
            ("250m", Duration::from_millis(250)),
            ("7u", Duration::from_micros(7)),
            ("99999999n", Duration::from_nanos(99_999_999)),
        ] {
            h.insert(&GRPC_TIMEOUT, HeaderValue::from_static(text));
            assert_eq!(timeout(&h).unwrap(), Some(want), "{text}");
        }
        for bad in ["", "S", "1x", "123456789S", "-1S", "1.5S"] {
            h.insert(&GRPC_TIMEOUT, HeaderValue::from_static(bad));
            assert!(timeout(&h).is_err(), "{bad}");
        }
    }

    #[test]
    fn content_types() {
        let of = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(v));
            codec(&h)
        };
        assert_eq!(of("application/grpc"), Some(ContentType::Protobuf));
        assert_eq!(of("application/grpc+proto"), Some(ContentType::Protobuf));
        assert_eq!(
            of("Application/GRPC+json; charset=utf-8"),
            Some(ContentType::Json)
        );
        assert_eq!(of("application/grpc+thrift"), None);
        assert_eq!(of("application/json"), None);
        assert_eq!(of("application/grpc-web"), None);
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(percent_encode("no: 100%"), "no: 100%25");
        assert_eq!(percent_encode("é\n"), "%C3%A9%0A");
    }
}
