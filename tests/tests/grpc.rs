//! gRPC on a micro service's own port: a tonic client generated from
//! `tests/proto/echo.proto` calls unary, server-streaming,
//! client-streaming and bidirectional methods, and reads statuses,
//! messages and trailers; the same service answers curl with JSON and the
//! typed client with MessagePack and protobuf at once; bad frames get a
//! status with a message, never a hang; health and reflection answer;
//! Python's grpcio calls it too.

#![cfg(feature = "protobuf")]

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use micro::client::CallOptions;
use micro::codec::ContentType;
use micro::registry::{MemoryRegistry, Registry};
use micro::{Context, Error, Result, ServiceHandle, Stream, Streaming, handler, service};
use prost::Message as _;
use tonic::Code;

/// The messages and the tonic client generated from echo.proto.
#[allow(
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    missing_debug_implementations
)]
mod pb {
    tonic::include_proto!("echo.v1");
}

use pb::{EchoReply, EchoRequest};

/// The descriptor set of echo.proto, for reflection.
const ECHO_DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/echo.bin"));

/// The echo service of echo.proto, on the messages prost generated.
struct Echo;

/// What every handler does first: wait, or fail, as asked.
async fn behave(req: &EchoRequest) -> Result<()> {
    if req.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(req.delay_ms)).await;
    }
    if req.fail_code != 0 {
        let code = u16::try_from(req.fail_code).unwrap_or(500);
        return Err(Error::new("", code, format!("asked to fail with {code}")));
    }
    Ok(())
}

fn tenant(ctx: &Context) -> String {
    ctx.metadata()
        .get("x-tenant")
        .unwrap_or_default()
        .to_owned()
}

#[service(protobuf, package = "echo.v1")]
impl Echo {
    /// One request, one reply.
    #[handler]
    async fn say(&self, ctx: Context, req: EchoRequest) -> Result<EchoReply> {
        behave(&req).await?;
        Ok(EchoReply {
            text: req.text,
            index: 0,
            tenant: tenant(&ctx),
        })
    }

    /// `times` replies.
    #[handler]
    async fn repeat(&self, ctx: Context, req: EchoRequest) -> Result<Streaming<EchoReply>> {
        behave(&req).await?;
        if req.text == "empty" {
            // Protobuf's empty message: zero bytes, still a message.
            return Ok(Streaming::iter(
                (0..req.times).map(|_| EchoReply::default()),
            ));
        }
        let tenant = tenant(&ctx);
        let text = req.text;
        Ok(Streaming::iter((1..=req.times).map(move |index| {
            EchoReply {
                text: text.clone(),
                index,
                tenant: tenant.clone(),
            }
        })))
    }

    /// The texts of every request, joined.
    #[handler]
    async fn collect(&self, mut requests: Streaming<EchoRequest>) -> Result<EchoReply> {
        let mut texts = Vec::new();
        while let Some(req) = requests.recv().await? {
            behave(&req).await?;
            texts.push(req.text);
        }
        Ok(EchoReply {
            index: u32::try_from(texts.len()).unwrap_or(u32::MAX),
            text: texts.join(","),
            tenant: String::new(),
        })
    }

    /// Every request back, numbered.
    #[handler]
    async fn chat(&self, mut stream: Stream<EchoRequest, EchoReply>) -> Result<()> {
        let mut index = 0;
        while let Some(req) = stream.recv().await? {
            behave(&req).await?;
            index += 1;
            stream
                .send(EchoReply {
                    text: req.text,
                    index,
                    tenant: String::new(),
                })
                .await?;
        }
        Ok(())
    }
}

async fn start(max_body_size: Option<usize>) -> (ServiceHandle, Arc<MemoryRegistry>) {
    let registry = Arc::new(MemoryRegistry::new());
    let mut service = micro::Service::new("echo")
        .address("127.0.0.1:0")
        .registry(registry.clone())
        .file_descriptor_set(ECHO_DESCRIPTORS)
        .handle(Echo);
    if let Some(limit) = max_body_size {
        service = service.max_body_size(limit);
    }
    (service.start().await.expect("service starts"), registry)
}

async fn tonic_client(
    svc: &ServiceHandle,
) -> pb::echo_client::EchoClient<tonic::transport::Channel> {
    pb::echo_client::EchoClient::connect(format!("http://{}", svc.local_addr()))
        .await
        .expect("tonic connects over h2c")
}

fn request(text: &str) -> EchoRequest {
    EchoRequest {
        text: text.to_owned(),
        ..EchoRequest::default()
    }
}

#[tokio::test]
async fn tonic_unary_with_metadata_errors_and_deadline() {
    let (svc, _) = start(None).await;
    let mut client = tonic_client(&svc).await;

    let mut req = tonic::Request::new(request("hello"));
    req.metadata_mut()
        .insert("x-tenant", "acme".parse().expect("ascii"));
    let reply = client.say(req).await.expect("Say succeeds");
    assert_eq!(reply.get_ref().text, "hello");
    assert_eq!(
        reply.get_ref().tenant,
        "acme",
        "metadata reaches the context"
    );

    for (code, want) in [
        (400, Code::InvalidArgument),
        (401, Code::Unauthenticated),
        (403, Code::PermissionDenied),
        (404, Code::NotFound),
        (408, Code::DeadlineExceeded),
        (409, Code::Aborted),
        (429, Code::ResourceExhausted),
        (500, Code::Internal),
        (503, Code::Unavailable),
    ] {
        let status = client
            .say(EchoRequest {
                fail_code: code,
                ..request("x")
            })
            .await
            .expect_err("the handler fails");
        assert_eq!(status.code(), want, "micro {code}");
        assert_eq!(status.message(), format!("asked to fail with {code}"));
    }

    // A timeout shorter than the handler. tonic sends it as grpc-timeout
    // and also gives up by itself at the same moment (CANCELLED, "Timeout
    // expired"), so which side ends the call is a race; the raw call of
    // `bad_frames_...` shows the server's own DEADLINE_EXCEEDED.
    let mut req = tonic::Request::new(EchoRequest {
        delay_ms: 5_000,
        ..request("slow")
    });
    req.set_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let status = client.say(req).await.expect_err("past its deadline");
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));

    // Unknown methods and services: UNIMPLEMENTED, saying which.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", svc.local_addr()))
        .expect("uri")
        .connect()
        .await
        .expect("connects");
    let mut raw = tonic::client::Grpc::new(channel);
    for (path, says) in [
        (
            "/echo.v1.Echo/Nope",
            "unknown method Nope for service echo.v1.Echo",
        ),
        ("/echo.v2.Echo/Say", "unknown service echo.v2.Echo"),
    ] {
        raw.ready().await.expect("ready");
        let status = raw
            .unary::<EchoRequest, EchoReply, _>(
                tonic::Request::new(request("x")),
                http::uri::PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .expect_err("no such method");
        assert_eq!(status.code(), Code::Unimplemented, "{path}");
        assert!(status.message().contains(says), "{path}: {status:?}");
    }
    svc.stop().await.expect("stops");
}

#[tokio::test]
async fn tonic_streams_of_every_shape() {
    let (svc, _) = start(None).await;
    let mut client = tonic_client(&svc).await;

    // Server streaming.
    let mut req = tonic::Request::new(EchoRequest {
        times: 3,
        ..request("r")
    });
    req.metadata_mut()
        .insert("x-tenant", "acme".parse().expect("ascii"));
    let mut replies = client.repeat(req).await.expect("Repeat opens").into_inner();
    let mut seen = Vec::new();
    while let Some(reply) = replies.message().await.expect("a reply") {
        assert_eq!((reply.text.as_str(), reply.tenant.as_str()), ("r", "acme"));
        seen.push(reply.index);
    }
    assert_eq!(seen, [1, 2, 3]);
    let trailers = replies.trailers().await.expect("trailers");
    assert_eq!(
        trailers.and_then(|t| t
            .get("grpc-status")
            .map(|v| v.to_str().unwrap_or("").to_owned())),
        Some("0".to_owned())
    );
    // Empty messages (zero bytes each) are messages, not the end.
    let mut empties = client
        .repeat(EchoRequest {
            times: 3,
            ..request("empty")
        })
        .await
        .expect("Repeat opens")
        .into_inner();
    let mut n = 0;
    while let Some(reply) = empties.message().await.expect("a reply") {
        assert_eq!(reply, EchoReply::default());
        n += 1;
    }
    assert_eq!(n, 3, "three empty messages");

    // A server stream whose handler fails before any reply.
    let status = client
        .repeat(EchoRequest {
            times: 3,
            fail_code: 404,
            ..request("r")
        })
        .await;
    let status = match status {
        Err(status) => status,
        Ok(stream) => stream
            .into_inner()
            .message()
            .await
            .expect_err("the stream fails"),
    };
    assert_eq!(status.code(), Code::NotFound);

    // Client streaming.
    let texts = futures_util::stream::iter(["a", "b", "c"].map(request));
    let reply = client.collect(texts).await.expect("Collect").into_inner();
    assert_eq!((reply.text.as_str(), reply.index), ("a,b,c", 3));
    let failing = futures_util::stream::iter([
        request("a"),
        EchoRequest {
            fail_code: 400,
            ..request("b")
        },
    ]);
    let status = client.collect(failing).await.expect_err("Collect fails");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "asked to fail with 400");

    // Bidirectional, interleaved: each reply arrives before the next
    // request is sent.
    let (tx, rx) = tokio::sync::mpsc::channel::<EchoRequest>(1);
    let outgoing =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
    let mut incoming = client
        .chat(outgoing)
        .await
        .expect("Chat opens")
        .into_inner();
    for (i, text) in ["one", "two", "three"].into_iter().enumerate() {
        tx.send(request(text)).await.expect("sent");
        let reply = tokio::time::timeout(Duration::from_secs(5), incoming.message())
            .await
            .expect("the reply comes before the next request")
            .expect("a reply")
            .expect("not the end");
        assert_eq!(reply.text, text);
        assert_eq!(reply.index as usize, i + 1);
    }
    drop(tx);
    assert!(incoming.message().await.expect("clean end").is_none());
    svc.stop().await.expect("stops");
}

#[tokio::test]
async fn tonic_sends_gzip_compressed_requests() {
    let (svc, _) = start(Some(1024)).await;
    let gzip = tonic::codec::CompressionEncoding::Gzip;
    let mut client = tonic_client(&svc)
        .await
        .send_compressed(gzip)
        .accept_compressed(gzip);

    // Unary: 900 bytes of text, a few dozen once compressed.
    let text = "y".repeat(900);
    let reply = client.say(request(&text)).await.expect("Say, compressed");
    assert_eq!(reply.get_ref().text, text);
    // The limit holds for the message once decompressed, not its few
    // compressed bytes.
    let status = client
        .say(request(&"y".repeat(2000)))
        .await
        .expect_err("over the limit once decompressed");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .message()
            .contains("decompresses to more than the limit")
    );

    // Every stream shape, with each request message compressed.
    let mut replies = client
        .repeat(EchoRequest {
            times: 2,
            ..request("z")
        })
        .await
        .expect("Repeat opens")
        .into_inner();
    let mut seen = Vec::new();
    while let Some(reply) = replies.message().await.expect("a reply") {
        seen.push((reply.text, reply.index));
    }
    assert_eq!(seen, [("z".to_owned(), 1), ("z".to_owned(), 2)]);
    let texts = futures_util::stream::iter(["a", "b", "c"].map(request));
    let reply = client.collect(texts).await.expect("Collect").into_inner();
    assert_eq!((reply.text.as_str(), reply.index), ("a,b,c", 3));
    let chat = futures_util::stream::iter(["one", "two"].map(request));
    let mut incoming = client.chat(chat).await.expect("Chat opens").into_inner();
    let mut echoed = Vec::new();
    while let Some(reply) = incoming.message().await.expect("a reply") {
        echoed.push(reply.text);
    }
    assert_eq!(echoed, ["one", "two"]);
    svc.stop().await.expect("stops");
}

#[tokio::test]
async fn gzip_requests_get_gzip_replies_when_the_client_reads_gzip() {
    let (svc, _) = start(None).await;
    let addr = svc.local_addr().to_string();
    let text = "compress me ".repeat(50);
    let say = request(&text).encode_to_vec();
    let gunzip = |data: &[u8]| {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .expect("gzip");
        out
    };
    // Compressed in, and gzip listed as readable: compressed out, and the
    // reply's headers say so.
    let raw = raw_call(
        &addr,
        "/echo.v1.Echo/Say",
        &[("grpc-encoding", "gzip"), ("grpc-accept-encoding", "gzip")],
        gzip_framed(&say),
    )
    .await;
    assert_eq!(raw.status.as_deref(), Some("0"), "{}", raw.message);
    assert_eq!(raw.encoding.as_deref(), Some("gzip"));
    assert_eq!(raw.body[0], 1, "the compressed flag");
    let reply = EchoReply::decode(&gunzip(&raw.body[5..])[..]).expect("an EchoReply");
    assert_eq!(reply.text, text);
    // A server stream's replies too, each message compressed.
    let repeat = EchoRequest {
        times: 2,
        ..request(&text)
    }
    .encode_to_vec();
    let raw = raw_call(
        &addr,
        "/echo.v1.Echo/Repeat",
        &[
            ("grpc-encoding", "gzip"),
            ("grpc-accept-encoding", "identity,gzip"),
        ],
        gzip_framed(&repeat),
    )
    .await;
    assert_eq!(raw.status.as_deref(), Some("0"), "{}", raw.message);
    assert_eq!(raw.encoding.as_deref(), Some("gzip"));
    let mut body = &raw.body[..];
    let mut texts = Vec::new();
    while !body.is_empty() {
        assert_eq!(body[0], 1, "the compressed flag");
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let reply = EchoReply::decode(&gunzip(&body[5..5 + len])[..]).expect("an EchoReply");
        texts.push((reply.text == text, reply.index));
        body = &body[5 + len..];
    }
    assert_eq!(texts, [(true, 1), (true, 2)]);
    // A client that did not say it reads gzip gets plain replies.
    let raw = raw_call(
        &addr,
        "/echo.v1.Echo/Say",
        &[("grpc-encoding", "gzip")],
        gzip_framed(&say),
    )
    .await;
    assert_eq!(raw.status.as_deref(), Some("0"), "{}", raw.message);
    assert_eq!(raw.encoding, None);
    assert_eq!(raw.body[0], 0);
    assert_eq!(
        EchoReply::decode(&raw.body[5..])
            .expect("an EchoReply")
            .text,
        text
    );
    svc.stop().await.expect("stops");
}

#[derive(serde::Deserialize)]
struct JsonReply {
    text: String,
}

#[tokio::test]
async fn one_service_answers_grpc_json_msgpack_and_protobuf_at_once() {
    let (svc, registry) = start(None).await;
    let addr = svc.local_addr().to_string();

    // gRPC.
    let mut grpc = tonic_client(&svc).await;
    let reply = grpc.say(request("grpc")).await.expect("gRPC").into_inner();
    assert_eq!(reply.text, "grpc");

    // curl with JSON, on the same port.
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"text":"curl"}"#,
        ])
        .arg(format!("http://{addr}/Echo.Say"))
        .output()
        .await
        .expect("curl runs");
    let json: JsonReply = serde_json::from_slice(&out.stdout).expect("a JSON reply");
    assert_eq!(json.text, "curl");

    // The typed client, in MessagePack and in protobuf.
    let client = micro::Client::builder().registry(registry.clone()).build();
    let typed = EchoClient::new("echo", client);
    for codec in [ContentType::MsgPack, ContentType::Protobuf] {
        let reply = typed
            .say_with(request("typed"), CallOptions::new().content_type(codec))
            .await
            .expect("typed call");
        assert_eq!(reply.text, "typed", "{codec:?}");
    }
    // And its streams, protobuf on the WebSocket.
    let mut repeat = typed
        .repeat(EchoRequest {
            times: 2,
            ..request("ws")
        })
        .await
        .expect("stream opens");
    let mut n = 0;
    while let Some(r) = repeat.recv().await.expect("a reply") {
        assert_eq!(r.text, "ws");
        n += 1;
    }
    assert_eq!(n, 2);
    // Empty messages on the WebSocket too: each is a message, not the
    // half-close that an empty frame is.
    let mut empties = typed
        .repeat(EchoRequest {
            times: 3,
            ..request("empty")
        })
        .await
        .expect("stream opens");
    let mut n = 0;
    while let Some(r) = empties.recv().await.expect("a reply") {
        assert_eq!(r, EchoReply::default());
        n += 1;
    }
    assert_eq!(n, 3, "three empty messages over the WebSocket");

    // The registry says which endpoints speak gRPC, and where.
    let nodes = registry.get_service("echo").await.expect("registered");
    let endpoints = &nodes[0].endpoints;
    let say = endpoints
        .iter()
        .find(|e| e.name == "Echo.Say")
        .expect("Echo.Say");
    assert_eq!(
        say.metadata.get("grpc").map(String::as_str),
        Some("/echo.v1.Echo/Say")
    );
    assert_eq!(
        say.metadata.get("protobuf").map(String::as_str),
        Some("echo.v1.Echo")
    );
    let chat = endpoints
        .iter()
        .find(|e| e.name == "Echo.Chat")
        .expect("Echo.Chat");
    assert_eq!(
        chat.metadata.get("grpc").map(String::as_str),
        Some("/echo.v1.Echo/Chat")
    );
    svc.stop().await.expect("stops");
}

/// A plain HTTP/2 client, for frames no gRPC library would send.
fn h2() -> HyperClient<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    HyperClient::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A framed message: the compressed flag, the length, the bytes.
fn framed(flag: u8, declared: u32, bytes: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(flag);
    out.put_u32(declared);
    out.put_slice(bytes);
    out.freeze()
}

/// What a raw gRPC call got back: HTTP status, grpc-status (from the
/// headers or the trailers), grpc-message, and the body's messages.
struct RawGrpc {
    http: http::StatusCode,
    content_type: String,
    /// The reply's `grpc-encoding`.
    encoding: Option<String>,
    status: Option<String>,
    message: String,
    body: Bytes,
}

async fn raw_call(addr: &str, path: &str, headers: &[(&str, &str)], body: Bytes) -> RawGrpc {
    let mut req = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = tokio::time::timeout(Duration::from_secs(10), async {
        let res = h2()
            .request(req.body(Full::new(body)).expect("request"))
            .await
            .expect("a response");
        let (parts, body) = res.into_parts();
        let collected = body.collect().await.expect("the body");
        (parts, collected)
    })
    .await
    .expect("an answer, not a hang");
    let (parts, collected) = res;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let get = |name: &str| {
        parts
            .headers
            .get(name)
            .or_else(|| trailers.get(name))
            .map(|v| v.to_str().expect("ascii").to_owned())
    };
    RawGrpc {
        http: parts.status,
        content_type: get("content-type").unwrap_or_default(),
        encoding: get("grpc-encoding"),
        status: get("grpc-status"),
        message: get("grpc-message").unwrap_or_default(),
        body: collected.to_bytes(),
    }
}

/// One bad call: what it is, its path, its headers, its body, the
/// grpc-status it gets and what its grpc-message says.
type BadCase<'a> = (
    &'a str,
    &'a str,
    Vec<(&'a str, &'a str)>,
    Bytes,
    &'a str,
    &'a str,
);

/// A message gzip-compressed and framed with the compressed flag.
fn gzip_framed(message: &[u8]) -> Bytes {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(message).expect("in memory");
    let data = gz.finish().expect("in memory");
    framed(1, u32::try_from(data.len()).expect("small"), &data)
}

/// A message framed as it is: uncompressed, its own length.
fn whole(message: &[u8]) -> Bytes {
    framed(0, u32::try_from(message.len()).expect("small"), message)
}

#[tokio::test]
async fn bad_frames_get_a_status_with_a_message_and_the_server_stays_up() {
    let (svc, _) = start(Some(1024)).await;
    let addr = svc.local_addr().to_string();
    let good = request("ok").encode_to_vec();
    let big = request(&"x".repeat(2000)).encode_to_vec();
    let slow = EchoRequest {
        delay_ms: 5_000,
        ..request("slow")
    }
    .encode_to_vec();
    let say = "/echo.v1.Echo/Say";
    let cases: Vec<BadCase<'_>> = vec![
        (
            "a frame that says 100 bytes and brings 3",
            say,
            vec![],
            framed(0, 100, b"abc"),
            "3",
            "truncated gRPC message",
        ),
        (
            "over the size limit",
            say,
            vec![],
            whole(&big),
            "8",
            "limit of",
        ),
        (
            "the compressed flag without an encoding",
            say,
            vec![],
            framed(1, good.len() as u32, &good),
            "13",
            "names no compression",
        ),
        (
            "an encoding this server lacks",
            say,
            vec![("grpc-encoding", "snappy")],
            framed(1, good.len() as u32, &good),
            "12",
            "accepts gzip,identity",
        ),
        (
            "gzip that is not gzip",
            say,
            vec![("grpc-encoding", "gzip")],
            framed(1, good.len() as u32, &good),
            "3",
            "does not decompress",
        ),
        (
            "gzip that decompresses past the size limit",
            say,
            vec![("grpc-encoding", "gzip")],
            gzip_framed(&big),
            "8",
            "decompresses to more than the limit",
        ),
        (
            "bytes that are not an EchoRequest",
            say,
            vec![],
            whole(&[0xff, 0xff, 0xff, 0xff, 0x0f]),
            "3",
            "decoding application/protobuf",
        ),
        (
            "the server's own deadline, from grpc-timeout",
            say,
            vec![("grpc-timeout", "200m")],
            whole(&slow),
            "4",
            "deadline exceeded serving Echo.Say",
        ),
        (
            "a bad grpc-timeout",
            say,
            vec![("grpc-timeout", "soon")],
            whole(&good),
            "3",
            "invalid grpc-timeout",
        ),
        (
            "two messages to a unary method",
            say,
            vec![],
            [whole(&good), whole(&good)].concat().into(),
            "3",
            "more than one request message",
        ),
        (
            "no message at all",
            say,
            vec![],
            Bytes::new(),
            "3",
            "no request message",
        ),
        (
            "a truncated frame on a stream",
            "/echo.v1.Echo/Collect",
            vec![],
            framed(0, 50, b"ab"),
            "3",
            "truncated",
        ),
    ];
    for (what, path, headers, body, status, says) in cases {
        let started = std::time::Instant::now();
        let r = raw_call(&addr, path, &headers, body).await;
        assert_eq!(r.http, http::StatusCode::OK, "{what}");
        assert_eq!(r.status.as_deref(), Some(status), "{what}: {}", r.message);
        assert!(r.message.contains(says), "{what}: {}", r.message);
        assert!(started.elapsed() < Duration::from_secs(4), "{what}");
    }

    // A gRPC path called without gRPC's content type: a 415 in the error
    // JSON, saying what to send.
    let res = micro_tests::RawClient::new()
        .send(
            "POST",
            &addr,
            say,
            &[("content-type", "application/json")],
            Bytes::from_static(b"{}"),
        )
        .await
        .expect("a reply");
    assert!(res.expect_error(415).contains("application/grpc"));

    // Still serving, and a good raw call is a framed reply with status 0
    // in the trailers.
    let r = raw_call(&addr, say, &[], whole(&good)).await;
    assert_eq!(
        (r.http, r.status.as_deref()),
        (http::StatusCode::OK, Some("0"))
    );
    assert_eq!(r.content_type, "application/grpc");
    assert_eq!(r.body[0], 0);
    let reply = EchoReply::decode(&r.body[5..]).expect("an EchoReply");
    assert_eq!(reply.text, "ok");
    svc.stop().await.expect("stops");
}

/// `grpc.health.v1.HealthCheckRequest` and its response.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

#[tokio::test]
async fn grpc_health_reports_serving_and_unknown_services() {
    let (svc, _) = start(None).await;
    let addr = svc.local_addr().to_string();
    for name in ["", "echo", "echo.v1.Echo"] {
        let body = HealthCheckRequest {
            service: name.to_owned(),
        }
        .encode_to_vec();
        let r = raw_call(&addr, "/grpc.health.v1.Health/Check", &[], whole(&body)).await;
        assert_eq!(r.status.as_deref(), Some("0"), "{name:?}: {}", r.message);
        let status = HealthCheckResponse::decode(&r.body[5..]).expect("a response");
        assert_eq!(status.status, 1, "SERVING for {name:?}");
    }
    let body = HealthCheckRequest {
        service: "nope.Nope".to_owned(),
    }
    .encode_to_vec();
    let r = raw_call(&addr, "/grpc.health.v1.Health/Check", &[], whole(&body)).await;
    assert_eq!(r.status.as_deref(), Some("5"), "{}", r.message);
    svc.stop().await.expect("stops");
}

const PYTHON_CLIENT: &str = include_str!("../grpc/client.py");

/// Python's grpcio, with stubs generated by grpcio-tools from echo.proto,
/// and the standard health and reflection clients.
#[tokio::test]
#[cfg_attr(
    not(micro_test_grpcio),
    ignore = "needs Python's grpcio, grpcio-tools, grpcio-health-checking and grpcio-reflection: set MICRO_TEST_GRPCIO=1 once installed"
)]
async fn python_grpcio_calls_the_service() {
    micro_tests::require_tool(
        micro_tests::python_has("grpc_tools.protoc")
            && micro_tests::python_has("grpc_health.v1.health_pb2")
            && micro_tests::python_has(
                "grpc_reflection.v1alpha.proto_reflection_descriptor_database",
            ),
        "MICRO_TEST_GRPCIO",
        "Python's grpcio",
        "pip install grpcio grpcio-tools grpcio-health-checking grpcio-reflection",
    );
    let (svc, _) = start(None).await;
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");
    let out = micro_tests::python(
        PYTHON_CLIENT,
        vec![svc.local_addr().to_string(), proto_dir.to_owned()],
    )
    .await;
    for line in [
        "unary: hello acme",
        "server streaming: 1 2 3",
        "client streaming: a,b,c",
        "bidirectional: one two three",
        "gzip unary: 500",
        "gzip client streaming: x,y,z",
        "gzip health: SERVING",
        "deadline: DEADLINE_EXCEEDED",
        "unknown method: UNIMPLEMENTED",
        "not found: NOT_FOUND asked to fail with 404",
        "health: SERVING",
        "health watch: SERVING",
        "health watch unknown: SERVICE_UNKNOWN",
        "reflection services: echo.v1.Echo grpc.health.v1.Health",
        "reflection methods: Chat Collect Repeat Say",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    svc.stop().await.expect("stops");
}

#[tokio::test]
async fn streams_count_toward_graceful_stop_and_end_with_unavailable() {
    let registry = Arc::new(MemoryRegistry::new());
    let svc = micro::Service::new("echo")
        .address("127.0.0.1:0")
        .registry(registry)
        .grace_period(Duration::from_millis(300))
        .handle(Echo)
        .start()
        .await
        .expect("starts");
    let mut client = tonic_client(&svc).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<EchoRequest>(1);
    let outgoing =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
    let mut incoming = client.chat(outgoing).await.expect("opens").into_inner();
    tx.send(request("before")).await.expect("sent");
    assert_eq!(
        incoming.message().await.expect("reply").expect("one").text,
        "before"
    );
    let stopping = tokio::spawn(svc.stop());
    let status = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match incoming.message().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => break status,
            }
        }
    })
    .await
    .expect("the stream ends when the grace period is over");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    stopping.await.expect("joins").expect("stops");
    drop(tx);
    let _ = incoming.next().await;
}

/// Auth applies to gRPC as to micro's own calls: the token travels as
/// `authorization` metadata; none is UNAUTHENTICATED, one the rules refuse
/// PERMISSION_DENIED, checked before the handler runs.
#[tokio::test]
async fn auth_checks_grpc_calls_and_streams() {
    use micro::auth::{Account, AccountKind, Auth, Rule, TokenKind};
    let auth = Auth::issuer("echo")
        .rules(vec![Rule::grant("Echo.*", "echo:use")])
        .build()
        .expect("auth");
    let svc = micro::Service::new("echo")
        .address("127.0.0.1:0")
        .registry(Arc::new(MemoryRegistry::new()))
        .auth(auth.clone())
        .handle(Echo)
        .start()
        .await
        .expect("starts");
    let token = |scopes: Vec<String>| {
        auth.issue(
            &Account::new("alice", AccountKind::User, scopes),
            TokenKind::Access,
            Duration::from_secs(60),
        )
        .expect("a token")
    };
    let allowed = token(vec!["echo:use".to_owned()]);
    let refused = token(vec!["other".to_owned()]);
    let mut client = tonic_client(&svc).await;
    let with = |t: Option<&str>, req: EchoRequest| {
        let mut req = tonic::Request::new(req);
        if let Some(t) = t {
            req.metadata_mut().insert(
                "authorization",
                format!("Bearer {t}").parse().expect("ascii"),
            );
        }
        req
    };

    let status = client
        .say(with(None, request("x")))
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = client
        .say(with(Some(&refused), request("x")))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let reply = client
        .say(with(Some(&allowed), request("x")))
        .await
        .expect("allowed");
    assert_eq!(reply.get_ref().text, "x");

    // Streams too: refused before the handler runs, allowed with a token.
    let status = match client
        .repeat(with(
            None,
            EchoRequest {
                times: 2,
                ..request("x")
            },
        ))
        .await
    {
        Err(status) => status,
        Ok(stream) => stream.into_inner().message().await.expect_err("refused"),
    };
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let mut replies = client
        .repeat(with(
            Some(&allowed),
            EchoRequest {
                times: 2,
                ..request("x")
            },
        ))
        .await
        .expect("allowed")
        .into_inner();
    let mut n = 0;
    while replies.message().await.expect("a reply").is_some() {
        n += 1;
    }
    assert_eq!(n, 2);
    svc.stop().await.expect("stops");
}
