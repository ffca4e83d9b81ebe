//! RPC over real sockets, in one process: codecs, errors, the typed client,
//! context propagation, middleware and health.

use std::sync::Arc;
use std::time::{Duration, Instant};

use micro::client::CallOptions;
use micro::codec::ContentType;
use micro::registry::{MemoryRegistry, Registry};
use micro::{Client, Context, Error, Result, ServiceHandle, handler, service};
use micro_tests::{Failure, Greeter, GreeterClient, Greeting, Hello, RawClient, Seen, Sleep};

async fn start(service: micro::Service) -> ServiceHandle {
    service
        .address("127.0.0.1:0")
        .registry(Arc::new(MemoryRegistry::new()))
        .start()
        .await
        .expect("service starts")
}

async fn greeter() -> ServiceHandle {
    start(micro::Service::new("greeter").handle(Greeter)).await
}

fn json(v: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test]
async fn json_call_with_curl_shaped_request() {
    let svc = greeter().await;
    let rsp = RawClient::new()
        .call(
            svc.local_addr(),
            "Greeter.Hello",
            &[("content-type", "application/json"), ("micro-id", "req-1")],
            r#"{"name": "alice"}"#,
        )
        .await;
    assert_eq!(rsp.status, 200);
    assert_eq!(rsp.header("content-type"), Some("application/json"));
    assert_eq!(rsp.header("micro-id"), Some("req-1"));
    assert_eq!(&rsp.body[..], br#"{"message":"Hello alice"}"#);
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn header_aliases_and_defaults() {
    let svc = greeter().await;
    let raw = RawClient::new();
    // Micro-Method and X-Micro-Endpoint name the endpoint too; a missing
    // Content-Type means JSON; parameters are ignored.
    for (header, ct) in [
        ("micro-method", None),
        ("x-micro-endpoint", Some("application/json; charset=utf-8")),
        ("x-micro-method", Some("APPLICATION/JSON")),
    ] {
        let mut headers = vec![(header, "Greeter.Hello")];
        if let Some(ct) = ct {
            headers.push(("content-type", ct));
        }
        let rsp = raw
            .send("POST", svc.local_addr(), "/", &headers, r#"{"name":"bo"}"#)
            .await
            .unwrap();
        assert_eq!(rsp.status, 200, "{header}: {:?}", rsp.body);
        assert_eq!(rsp.json()["message"], "Hello bo");
        // A request id is made when the caller sends none.
        assert_eq!(rsp.header("micro-id").unwrap().len(), 36);
    }
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn msgpack_in_msgpack_out() {
    let svc = greeter().await;
    let body = rmp_serde::to_vec_named(&Hello {
        name: "carol".into(),
    })
    .unwrap();
    for ct in ["application/msgpack", "application/x-msgpack"] {
        let rsp = RawClient::new()
            .call(
                svc.local_addr(),
                "Greeter.Hello",
                &[("content-type", ct)],
                body.clone(),
            )
            .await;
        assert_eq!(rsp.status, 200);
        assert_eq!(rsp.header("content-type"), Some("application/msgpack"));
        // A map with field names, so any language can read it.
        let value: rmp_serde::decode::Error = match rmp_serde::from_slice::<Vec<String>>(&rsp.body)
        {
            Err(e) => e,
            Ok(v) => panic!("reply was an array, not a map: {v:?}"),
        };
        drop(value);
        let greeting: Greeting = rmp_serde::from_slice(&rsp.body).unwrap();
        assert_eq!(greeting.message, "Hello carol");
    }
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn accept_chooses_the_reply_codec() {
    let svc = greeter().await;
    let rsp = RawClient::new()
        .call(
            svc.local_addr(),
            "Greeter.Hello",
            &[
                ("content-type", "application/json"),
                ("accept", "application/msgpack"),
            ],
            r#"{"name":"dan"}"#,
        )
        .await;
    assert_eq!(rsp.header("content-type"), Some("application/msgpack"));
    let greeting: Greeting = rmp_serde::from_slice(&rsp.body).unwrap();
    assert_eq!(greeting.message, "Hello dan");
    // An Accept that names nothing supported leaves the request's codec.
    let rsp = RawClient::new()
        .call(
            svc.local_addr(),
            "Greeter.Hello",
            &[("accept", "text/html, */*")],
            r#"{"name":"dan"}"#,
        )
        .await;
    assert_eq!(rsp.header("content-type"), Some("application/json"));
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn framework_errors_have_codes_and_the_error_json() {
    let svc = start(
        micro::Service::new("greeter")
            .handle(Greeter)
            .max_body_size(1024),
    )
    .await;
    let addr = svc.local_addr();
    let raw = RawClient::new();

    let detail = raw
        .call(addr, "Greeter.Nope", &[], "{}")
        .await
        .expect_error(404);
    assert_eq!(detail, "endpoint Greeter.Nope not found");
    let rsp = raw.call(addr, "Nobody.Hello", &[], "{}").await;
    assert_eq!(
        rsp.expect_error(404),
        "endpoint Nobody.Hello not found: service \"greeter\" has no handler Nobody"
    );
    assert_eq!(rsp.json()["id"], "greeter");
    assert_eq!(rsp.json()["status"], "Not Found");

    let detail = raw
        .call(addr, "Greeter.Hello", &[], r#"{"nome":1}"#)
        .await
        .expect_error(400);
    assert_eq!(
        detail,
        "decoding application/json body: missing field `name` at line 1 column 10"
    );
    let detail = raw
        .call(addr, "Greeter.Hello", &[], "{not json")
        .await
        .expect_error(400);
    assert!(
        detail.starts_with("decoding application/json body: "),
        "{detail}"
    );
    let detail = raw
        .call(
            addr,
            "Greeter.Hello",
            &[("content-type", "application/msgpack")],
            "\u{c1}",
        )
        .await
        .expect_error(400);
    assert!(
        detail.starts_with("decoding application/msgpack body: "),
        "{detail}"
    );

    let detail = raw.call(addr, "Hello", &[], "{}").await.expect_error(400);
    assert_eq!(detail, "invalid endpoint \"Hello\": expected Type.Method");
    let detail = raw.call(addr, "A.B.C", &[], "{}").await.expect_error(400);
    assert_eq!(detail, "invalid endpoint \"A.B.C\": expected Type.Method");
    let detail = raw
        .send("POST", addr, "/", &[], "{}")
        .await
        .unwrap()
        .expect_error(400);
    assert_eq!(
        detail,
        "missing Micro-Endpoint header: expected Type.Method"
    );

    let detail = raw
        .call(
            addr,
            "Greeter.Hello",
            &[("content-type", "text/xml")],
            "<x/>",
        )
        .await
        .expect_error(415);
    // The list is this build's codecs: protobuf with its feature.
    let protobuf = if cfg!(feature = "protobuf") {
        ", application/protobuf"
    } else {
        ""
    };
    assert_eq!(
        detail,
        format!(
            "unsupported content type `text/xml`, expected one of: application/json, application/msgpack{protobuf}"
        )
    );

    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(2000));
    let detail = raw
        .call(addr, "Greeter.Hello", &[], big)
        .await
        .expect_error(413);
    assert_eq!(
        detail,
        "request body is larger than the limit of 1024 bytes"
    );

    let detail = raw
        .call(addr, "Greeter.Hello", &[("timeout", "soon")], "{}")
        .await
        .expect_error(400);
    assert_eq!(
        detail,
        "invalid Timeout header \"soon\": expected decimal nanoseconds"
    );

    // GET / opens streams; without an upgrade it says what it wants.
    let detail = raw
        .send("GET", addr, "/", &[], "")
        .await
        .unwrap()
        .expect_error(426);
    assert_eq!(
        detail,
        "GET / opens a stream: send a WebSocket upgrade (Upgrade: websocket), or call endpoints with POST /"
    );
    let rsp = raw.send("PUT", addr, "/", &[], "").await.unwrap();
    assert_eq!(
        rsp.expect_error(405),
        "PUT / is not supported: call endpoints with POST /, open streams with a WebSocket upgrade on GET /"
    );
    assert_eq!(rsp.header("allow"), Some("GET, POST"));
    let detail = raw
        .send("POST", addr, "/Greeter/Hello", &[], "{}")
        .await
        .unwrap()
        .expect_error(404);
    assert_eq!(detail, "no route for POST /Greeter/Hello");

    // After all of that, the server still serves.
    let rsp = raw
        .call(addr, "Greeter.Hello", &[], r#"{"name":"ok"}"#)
        .await;
    assert_eq!(rsp.status, 200);
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_413() {
    let svc = start(
        micro::Service::new("greeter")
            .handle(Greeter)
            .max_body_size(64),
    )
    .await;
    // No Content-Length: the limit is enforced while reading.
    let mut stream = tokio::net::TcpStream::connect(svc.local_addr())
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let chunk = "x".repeat(100);
    let req = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nMicro-Endpoint: Greeter.Echo\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut rsp = String::new();
    stream.read_to_string(&mut rsp).await.unwrap();
    assert!(rsp.starts_with("HTTP/1.1 413"), "{rsp}");
    assert!(rsp.contains("request body is larger than the limit of 64 bytes"));
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn handler_errors_keep_their_code() {
    let svc = greeter().await;
    let raw = RawClient::new();
    for code in [400, 401, 403, 409, 418, 429, 503] {
        let body = json(serde_json::json!({"code": code, "detail": "chosen"}));
        let rsp = raw.call(svc.local_addr(), "Greeter.Fail", &[], body).await;
        assert_eq!(rsp.expect_error(code), "chosen");
        assert_eq!(rsp.json()["id"], "greeter");
    }
    // A code outside 400-599 is kept in the JSON, sent as HTTP 500.
    let rsp = raw
        .call(
            svc.local_addr(),
            "Greeter.Fail",
            &[],
            json(serde_json::json!({"code": 42, "detail": "odd"})),
        )
        .await;
    assert_eq!(rsp.status, 500);
    assert_eq!(rsp.json()["code"], 42);
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_and_the_server_keeps_serving() {
    let svc = greeter().await;
    let raw = RawClient::new();
    for _ in 0..3 {
        let detail = raw
            .call(svc.local_addr(), "Greeter.Boom", &[], r#"{"name":"x"}"#)
            .await
            .expect_error(500);
        assert_eq!(detail, "handler Greeter.Boom panicked: boom for x");
        let rsp = raw
            .call(svc.local_addr(), "Greeter.Hello", &[], r#"{"name":"y"}"#)
            .await;
        assert_eq!(rsp.status, 200);
    }
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn timeout_header_bounds_the_handler() {
    let svc = greeter().await;
    let started = Instant::now();
    let rsp = RawClient::new()
        .call(
            svc.local_addr(),
            "Greeter.Slow",
            &[("timeout", "100000000")],
            r#"{"ms":5000}"#,
        )
        .await;
    assert_eq!(
        rsp.expect_error(408),
        "deadline exceeded serving Greeter.Slow"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // A timeout of zero has passed on arrival.
    let rsp = RawClient::new()
        .call(
            svc.local_addr(),
            "Greeter.Slow",
            &[("timeout", "0")],
            r#"{"ms":10}"#,
        )
        .await;
    rsp.expect_error(408);
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn typed_client_by_name_and_by_address() {
    let registry: Arc<dyn Registry> = Arc::new(MemoryRegistry::new());
    let svc = micro::Service::new("greeter")
        .address("127.0.0.1:0")
        .registry(registry.clone())
        .handle(Greeter)
        .start()
        .await
        .unwrap();
    let client = Client::builder().registry(registry).build();
    let greeter = GreeterClient::new("greeter", client);
    assert_eq!(greeter.service(), "greeter");

    // By name, through the registry and the selector.
    let rsp = greeter.hello(Hello { name: "eve".into() }).await.unwrap();
    assert_eq!(rsp.message, "Hello eve");

    // By address, with MessagePack, metadata and a timeout.
    let opts = CallOptions::new()
        .address(svc.local_addr().to_string())
        .content_type(ContentType::MsgPack)
        .metadata("X-User", "frank")
        .timeout(Duration::from_millis(1500));
    let seen = greeter.whoami_with(opts).await.unwrap();
    assert_eq!(seen.user.as_deref(), Some("frank"));
    assert_eq!(seen.endpoint.as_deref(), Some("Greeter.Whoami"));
    let left = seen.remaining_ms.unwrap();
    assert!(left > 1000 && left <= 1500, "{left}");

    // A plain String request and reply, from a task of its own: a typed
    // call's future is Send and owns what it needs.
    let spawned = tokio::spawn({
        let greeter = greeter.clone();
        async move { greeter.echo("hi".to_owned()).await }
    });
    assert_eq!(spawned.await.unwrap().unwrap(), "hi");

    // The handler's error arrives as micro::Error with its code.
    let err = greeter
        .fail(Failure {
            code: 409,
            detail: "taken".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err, Error::new("greeter", 409, "taken"));

    // The client's own deadline.
    let started = Instant::now();
    let err = greeter
        .slow_with(
            Sleep { ms: 3000 },
            CallOptions::new().timeout(Duration::from_millis(100)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), 408, "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));

    svc.stop().await.unwrap();

    // Once stopped, it is gone from the registry: 404 by name (not found,
    // which is not the registry being unreachable).
    let err = greeter.hello(Hello { name: "x".into() }).await.unwrap_err();
    assert_eq!(err.code(), 404);
    assert_eq!(err.detail(), "service \"greeter\" not found in registry");
}

#[tokio::test]
async fn unreachable_address_is_503() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let greeter = GreeterClient::new("greeter", Client::new());
    let err = greeter
        .hello_with(
            Hello { name: "x".into() },
            CallOptions::new().address(format!("127.0.0.1:{port}")),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), 503);
    assert_eq!(err.id(), "greeter");
    assert!(
        err.detail()
            .starts_with(&format!("calling greeter at 127.0.0.1:{port}: ")),
        "{err}"
    );
}

#[tokio::test]
async fn kept_alive_connections_survive_the_server_restarting_on_its_address() {
    let svc = greeter().await;
    let address = svc.local_addr().to_string();
    let greeter = GreeterClient::new(
        "greeter",
        Client::builder()
            .registry(Arc::new(MemoryRegistry::new()))
            // One attempt: a call sent on a connection the old server
            // closed would fail here instead of going again.
            .retry(micro::client::RetryPolicy::never())
            .build(),
    );
    let hello = |name: &str| {
        greeter.hello_with(
            Hello { name: name.into() },
            CallOptions::new().address(address.clone()),
        )
    };
    let calls = (0..8).map(|i| hello(&format!("first {i}")));
    for reply in futures_util::future::join_all(calls).await {
        assert!(reply.unwrap().message.starts_with("Hello first"));
    }
    // The pool now holds idle connections to the old server, which closes
    // them as it stops.
    svc.stop().await.unwrap();
    let err = hello("gone").await.unwrap_err();
    assert_eq!(err.code(), 503, "{err}");
    let again = micro::Service::new("greeter")
        .handle(Greeter)
        .address(address.as_str())
        .registry(Arc::new(MemoryRegistry::new()))
        .start()
        .await
        .expect("a new server on the same address");
    for i in 0..8 {
        let reply = hello(&format!("second {i}")).await.unwrap();
        assert_eq!(reply.message, format!("Hello second {i}"));
    }
    again.stop().await.unwrap();
}

/// A service that calls another with its own context.
struct Front {
    client: Client,
    back: String,
}

#[service]
impl Front {
    #[handler]
    async fn relay(&self, ctx: Context) -> Result<(Seen, Seen)> {
        let back = GreeterClient::new("greeter", self.client.clone());
        let downstream = back
            .whoami_with(CallOptions::new().context(&ctx).address(self.back.clone()))
            .await?;
        Ok((micro_tests::seen(&ctx), downstream))
    }
}

#[tokio::test]
async fn context_travels_to_downstream_calls() {
    let back = greeter().await;
    let front = start(micro::Service::new("front").handle(Front {
        client: Client::new(),
        back: back.local_addr().to_string(),
    }))
    .await;
    let rsp = RawClient::new()
        .call(
            front.local_addr(),
            "Front.Relay",
            &[
                ("micro-id", "trace-42"),
                ("x-user", "grace"),
                ("timeout", "2000000000"),
            ],
            "null",
        )
        .await;
    assert_eq!(rsp.status, 200, "{:?}", rsp.body);
    let (front_seen, back_seen): (Seen, Seen) = serde_json::from_slice(&rsp.body).unwrap();
    assert_eq!(front_seen.id, "trace-42");
    assert_eq!(back_seen.id, "trace-42");
    assert_eq!(back_seen.user.as_deref(), Some("grace"));
    assert_eq!(back_seen.endpoint.as_deref(), Some("Greeter.Whoami"));
    let (f, b) = (
        front_seen.remaining_ms.unwrap(),
        back_seen.remaining_ms.unwrap(),
    );
    // The downstream call ran inside the caller's 2 s budget.
    assert!(b > 1000 && b <= 2000, "back {b} ms");
    assert!(f > 1000 && f <= 2000, "front {f} ms");
    front.stop().await.unwrap();
    back.stop().await.unwrap();
}

#[tokio::test]
async fn tower_layers_on_server_and_client() {
    use http::{HeaderName, HeaderValue};
    use tower_http::set_header::{SetRequestHeaderLayer, SetResponseHeaderLayer};

    let svc = start(micro::Service::new("greeter").handle(Greeter).layer(
        SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-served-by"),
            HeaderValue::from_static("micro"),
        ),
    ))
    .await;
    let rsp = RawClient::new()
        .call(svc.local_addr(), "Greeter.Hello", &[], r#"{"name":"h"}"#)
        .await;
    assert_eq!(rsp.header("x-served-by"), Some("micro"));

    let client = Client::builder()
        .layer(SetRequestHeaderLayer::overriding(
            HeaderName::from_static("x-user"),
            HeaderValue::from_static("layered"),
        ))
        .build();
    let greeter = GreeterClient::new("greeter", client);
    let seen = greeter
        .whoami_with(CallOptions::new().address(svc.local_addr().to_string()))
        .await
        .unwrap();
    assert_eq!(seen.user.as_deref(), Some("layered"));
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn health_endpoints_and_checks() {
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = healthy.clone();
    let svc = start(micro::Service::new("greeter").handle(Greeter).health_check(
        "database",
        move || {
            let up = flag.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                if up {
                    Ok(())
                } else {
                    Err(Error::unavailable("connection refused"))
                }
            }
        },
    ))
    .await;
    let raw = RawClient::new();
    let addr = svc.local_addr();
    for path in ["/health", "/health/ready"] {
        let rsp = raw.send("GET", addr, path, &[], "").await.unwrap();
        assert_eq!(rsp.status, 200);
        assert_eq!(
            rsp.json(),
            serde_json::json!({"status":"up","checks":[{"name":"database","status":"up"}]})
        );
    }
    healthy.store(false, std::sync::atomic::Ordering::SeqCst);
    for path in ["/health", "/health/ready"] {
        let rsp = raw.send("GET", addr, path, &[], "").await.unwrap();
        assert_eq!(rsp.status, 503);
        assert_eq!(
            rsp.json(),
            serde_json::json!({"status":"down","checks":[
                {"name":"database","status":"down","detail":"connection refused"}
            ]})
        );
    }
    // Liveness does not depend on readiness checks.
    let rsp = raw
        .send("GET", addr, "/health/live", &[], "")
        .await
        .unwrap();
    assert_eq!(rsp.status, 200);
    assert_eq!(rsp.json(), serde_json::json!({"status":"up","checks":[]}));
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn draining_reports_not_ready_and_refuses_new_requests() {
    let svc = start(
        micro::Service::new("greeter")
            .handle(Greeter)
            .shutdown_delay(Duration::from_millis(1500)),
    )
    .await;
    let addr = svc.local_addr();
    let stopping = tokio::spawn(svc.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let raw = RawClient::new();
    let rsp = raw
        .send("GET", addr, "/health/ready", &[], "")
        .await
        .unwrap();
    assert_eq!(rsp.status, 503);
    assert_eq!(rsp.json()["checks"][0]["detail"], "shutting down");
    let rsp = raw
        .call(addr, "Greeter.Hello", &[], r#"{"name":"late"}"#)
        .await;
    assert_eq!(
        rsp.expect_error(503),
        "service \"greeter\" is shutting down"
    );
    assert_eq!(rsp.header("connection"), Some("close"));
    stopping.await.unwrap().unwrap();
    // The listener is closed now.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn in_process_stop_lets_in_flight_requests_finish() {
    let svc = greeter().await;
    let addr = svc.local_addr();
    let slow = tokio::spawn(async move {
        RawClient::new()
            .call(addr, "Greeter.Slow", &[], r#"{"ms":700}"#)
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    svc.stop().await.unwrap();
    let rsp = slow.await.unwrap();
    assert_eq!(rsp.status, 200);
    assert_eq!(rsp.json()["message"], "slept 700 ms");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn two_handlers_with_one_name_fail_to_start() {
    let err = micro::Service::new("twice")
        .address("127.0.0.1:0")
        .registry(Arc::new(MemoryRegistry::new()))
        .handle(Greeter)
        .handle(Greeter)
        .start()
        .await
        .unwrap_err();
    assert_eq!(
        err.detail(),
        "two handlers are named Greeter: handler names must be unique in a service"
    );
}

#[tokio::test]
async fn registration_describes_the_endpoints() {
    let registry = Arc::new(MemoryRegistry::new());
    let svc = micro::Service::new("greeter")
        .address("127.0.0.1:0")
        .version("1.2.0")
        .metadata("team", "core")
        .registry(registry.clone())
        .handle(Greeter)
        .start()
        .await
        .unwrap();
    let found = registry.get_service("greeter").await.unwrap();
    assert_eq!(found.len(), 1);
    let record = &found[0];
    assert_eq!(record.version, "1.2.0");
    assert_eq!(record.metadata["team"], "core");
    let names: Vec<_> = record
        .endpoints
        .iter()
        .map(|e| (e.name.as_str(), e.request.as_str(), e.response.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("Greeter.Hello", "Hello", "Greeting"),
            ("Greeter.Slow", "Sleep", "Greeting"),
            ("Greeter.Fail", "Failure", "Greeting"),
            ("Greeter.Boom", "Hello", "Greeting"),
            ("Greeter.Whoami", "()", "Seen"),
            ("Greeter.Echo", "String", "String"),
            ("Greeter.Pid", "()", "u32"),
            ("Greeter.Talk", "String", "String"),
        ]
    );
    let streams: Vec<_> = record
        .endpoints
        .iter()
        .filter(|e| e.metadata.get("stream").is_some_and(|v| v == "true"))
        .map(|e| (e.name.as_str(), e.metadata["stream.kind"].as_str()))
        .collect();
    assert_eq!(streams, [("Greeter.Talk", "bidirectional")]);
    let node = &record.nodes[0];
    assert!(node.id.starts_with("greeter-"));
    assert_eq!(node.address, svc.local_addr().to_string());
    assert_eq!(node.metadata["protocol"], "http");
    svc.stop().await.unwrap();
    assert!(registry.get_service("greeter").await.is_err());
}
