//! The HTTP API: calls and streams passed through to services, and the
//! JSON the dashboard reads (services, a service's records, health, a
//! topic's live tail).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use micro::Error;
use micro::client::CallOptions;
use micro::codec::ContentType;
use serde_json::Value;

use crate::Shared;
use crate::caller::token;

/// The largest request body passed through (micro's own default).
const MAX_BODY: usize = micro::server::DEFAULT_MAX_BODY_SIZE;

/// A call's deadline when the caller sets none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers that describe the hop to the gateway (hop-by-hop and framing
/// headers), or that the gateway's own call sets: never passed on as
/// metadata.
const NOT_PASSED: [&str; 18] = [
    "accept",
    "authorization",
    "connection",
    "content-length",
    "content-type",
    "cookie",
    "expect",
    "host",
    "keep-alive",
    "origin",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "timeout",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    router_with(shared, None)
}

/// The router, with the MCP server's allowed `Host` names (`None`: rmcp's
/// loopback names; empty: any).
pub(crate) fn router_with(shared: Arc<Shared>, mcp_hosts: Option<Vec<String>>) -> Router {
    let router = Router::new()
        .route("/", get(crate::dashboard::page))
        .route("/dashboard.js", get(crate::dashboard::script))
        .route("/dashboard.css", get(crate::dashboard::style))
        .route("/api/services", get(services))
        .route("/api/services/{service}", get(service))
        .route("/api/health/{service}", get(health))
        .route("/api/topics/{topic}", get(tail))
        .route("/{service}/{endpoint}", get(stream).post(call))
        .nest_service("/mcp", crate::mcp::http_service(shared.clone(), mcp_hosts))
        .fallback(|| async {
            error_response(&Error::not_found(
                "no such path: call POST /<service>/<Type.Method>, or open / for the dashboard",
            ))
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY));
    let router = if shared.auth.is_some() {
        router.layer(axum::middleware::from_fn_with_state(shared.clone(), guard))
    } else {
        router
    };
    router.with_state(shared)
}

/// With auth on, every request but the dashboard's own files needs a valid
/// bearer token (401 otherwise), before anything else runs.
async fn guard(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if shared.auth.is_some()
        && !matches!(
            request.uri().path(),
            "/" | "/dashboard.js" | "/dashboard.css"
        )
    {
        let token = token(request.headers(), request.uri().query());
        if let Err(e) = shared.admit(token.as_deref()).await {
            return error_response(&e);
        }
    }
    next.run(request).await
}

/// micro's error reply: its status, its JSON as the body and in
/// `Micro-Error`.
pub(crate) fn error_response(error: &Error) -> Response {
    let error = if error.id().is_empty() {
        error.clone().with_id("micro-gateway")
    } else {
        error.clone()
    };
    let json = error.to_json();
    let mut response = Response::new(Body::from(json.clone()));
    *response.status_mut() = error.http_status();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = header::HeaderValue::from_str(&json) {
        headers.insert("micro-error", value);
    }
    response
}

fn json_response(value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            [(header::CONTENT_TYPE, "application/json")],
            Body::from(body),
        )
            .into_response(),
        Err(e) => error_response(&Error::internal(e.to_string())),
    }
}

/// The options of a call made for this request: the caller's token, its
/// metadata and its deadline (`Timeout`, else `default`; none if that is
/// `None`).
fn call_options(
    headers: &HeaderMap,
    token: Option<&str>,
    default: Option<Duration>,
) -> micro::Result<CallOptions> {
    let mut options = CallOptions::new();
    if let Some(token) = token {
        options = options.token(token);
    }
    for (name, value) in headers {
        if NOT_PASSED.contains(&name.as_str()) || name.as_str().starts_with("sec-websocket-") {
            continue;
        }
        if let Ok(value) = value.to_str() {
            options = options.metadata(name, value);
        }
    }
    let timeout = match headers.get("timeout") {
        None => default,
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|nanos| Some(Duration::from_nanos(nanos)))
            .ok_or_else(|| {
                Error::bad_request(format!(
                    "invalid Timeout header {value:?}: expected decimal nanoseconds"
                ))
            })?,
    };
    Ok(match timeout {
        Some(timeout) => options.timeout(timeout),
        None => options,
    })
}

/// `POST /<service>/<Type.Method>`: the endpoint's reply, or its error.
async fn call(
    State(shared): State<Arc<Shared>>,
    Path((service, endpoint)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = token(&headers, query.as_deref());
    let result = async {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("?"));
        let content_type = ContentType::for_request(content_type)
            .map_err(|e| Error::unsupported_media_type(e.to_string()))?;
        let options = call_options(&headers, token.as_deref(), Some(DEFAULT_TIMEOUT))?;
        shared
            .client
            .call_raw(&service, &endpoint, content_type, body, options)
            .await
    }
    .await;
    match result {
        Ok((content_type, reply)) => {
            ([(header::CONTENT_TYPE, content_type.as_str())], reply).into_response()
        }
        Err(e) => error_response(&e),
    }
}

/// `GET /<service>/<Type.Method>` with a WebSocket upgrade: the endpoint's
/// stream, each message a JSON text frame both ways, an empty frame the end
/// of one direction, and a service's error the close code `4000 + code`
/// with its detail, as a service's own streams are (docs/wire.md).
async fn stream(
    State(shared): State<Arc<Shared>>,
    Path((service, endpoint)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(upgrade) = upgrade else {
        return error_response(&Error::method_not_allowed(format!(
            "GET /{service}/{endpoint} opens a stream with a WebSocket upgrade; call it with POST"
        )));
    };
    let token = token(&headers, query.as_deref());
    let opened = async {
        // A stream lasts as long as it is used: no deadline unless asked.
        let options = call_options(&headers, token.as_deref(), None)?;
        shared
            .client
            .stream::<Value, Value>(&service, &endpoint, options)
            .await
    }
    .await;
    match opened {
        Ok(stream) => upgrade.on_upgrade(move |socket| bridge(socket, stream)),
        Err(e) => error_response(&e),
    }
}

/// Passes messages between the browser's socket and the service's stream
/// until both directions have ended or either side fails.
async fn bridge(socket: WebSocket, stream: micro::client::ClientStream<Value, Value>) {
    use futures_util::{SinkExt, StreamExt};
    let (mut to_caller, mut from_caller) = socket.split();
    let (mut sender, mut replies) = stream.split();
    let sending = async move {
        while let Some(frame) = from_caller.next().await {
            let text = match frame {
                Ok(WsMessage::Text(text)) => text,
                Ok(WsMessage::Binary(bytes)) => match String::from_utf8(bytes.to_vec()) {
                    Ok(text) => text.into(),
                    Err(_) => return Err(Error::bad_request("a message is not UTF-8 JSON")),
                },
                Ok(WsMessage::Close(_)) | Err(_) => break,
                Ok(_) => continue,
            };
            if text.is_empty() {
                break;
            }
            let message: Value = serde_json::from_str(&text)
                .map_err(|e| Error::bad_request(format!("a message is not JSON: {e}")))?;
            sender.send(&message).await?;
        }
        sender.close().await
    };
    let receiving = async {
        loop {
            match replies.recv().await {
                Ok(Some(reply)) => {
                    let text = serde_json::to_string(&reply).unwrap_or_default();
                    if to_caller.send(WsMessage::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    let _ = to_caller.send(WsMessage::Text("".into())).await;
                    let _ = to_caller.send(close(1000, "")).await;
                    return;
                }
                Err(e) => {
                    let code = if (0..1000).contains(&e.code()) {
                        4000 + e.code()
                    } else {
                        4500
                    };
                    let _ = to_caller.send(close(code, e.detail())).await;
                    return;
                }
            }
        }
    };
    tokio::pin!(sending);
    tokio::pin!(receiving);
    tokio::select! {
        sent = &mut sending => {
            if let Err(e) = sent {
                tracing::debug!(error = %e, "gateway: a stream's sending side ended");
            }
            receiving.await;
        }
        () = &mut receiving => {}
    }
}

/// A close frame with a reason cut to what a frame holds (123 bytes).
fn close(code: u16, reason: &str) -> WsMessage {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    WsMessage::Close(Some(CloseFrame {
        code,
        reason: reason[..end].to_owned().into(),
    }))
}

/// `GET /api/services`: every service, with its versions and node count.
async fn services(State(shared): State<Arc<Shared>>) -> Response {
    let result = crate::inspect::services(shared.backends.registry().as_ref()).await;
    match result {
        Ok(rows) => json_response(&rows),
        Err(e) => error_response(&e),
    }
}

/// `GET /api/services/<service>`: its records, schemas filled in.
async fn service(State(shared): State<Arc<Shared>>, Path(service): Path<String>) -> Response {
    let result = crate::inspect::records(shared.backends.registry().as_ref(), &service).await;
    match result {
        Ok(records) => json_response(&records),
        Err(e) => error_response(&e),
    }
}

/// `GET /api/health/<service>`: each node's own `/health`.
async fn health(State(shared): State<Arc<Shared>>, Path(service): Path<String>) -> Response {
    let result = crate::inspect::health(shared.backends.registry().as_ref(), &service).await;
    match result {
        Ok(nodes) => json_response(&nodes),
        Err(e) => error_response(&e),
    }
}

/// `GET /api/topics/<topic>` with a WebSocket upgrade: each message
/// published to the topic from now on, as a text frame of
/// `{"topic", "id", "metadata", "payload"}`.
async fn tail(
    State(shared): State<Arc<Shared>>,
    Path(topic): Path<String>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(upgrade) = upgrade else {
        return error_response(&Error::method_not_allowed(
            "the live tail of a topic is a WebSocket: open it with an upgrade",
        ));
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Value>(256);
    let subscribed = crate::inspect::Tail::start(&shared.backends, &topic, tx).await;
    match subscribed {
        Ok(tail) => upgrade.on_upgrade(move |socket| tail_socket(socket, tail, rx)),
        Err(e) => error_response(&e),
    }
}

async fn tail_socket(
    socket: WebSocket,
    tail: crate::inspect::Tail,
    mut messages: tokio::sync::mpsc::Receiver<Value>,
) {
    use futures_util::{SinkExt, StreamExt};
    let (mut to_caller, mut from_caller) = socket.split();
    loop {
        tokio::select! {
            message = messages.recv() => {
                let Some(message) = message else { break };
                let text = serde_json::to_string(&message).unwrap_or_default();
                if to_caller.send(WsMessage::Text(text.into())).await.is_err() {
                    break;
                }
            }
            frame = from_caller.next() => match frame {
                Some(Ok(WsMessage::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    tail.stop().await;
}
