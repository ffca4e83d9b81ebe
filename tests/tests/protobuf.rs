//! Protobuf over micro's HTTP wire: a `#[service(protobuf)]` answers
//! `application/protobuf` (and `application/x-protobuf`) from curl and a
//! plain HTTP client, its typed client speaks protobuf, and the same
//! service answers JSON and MessagePack at once. A protobuf-only type
//! (prost without serde) refuses the other codecs with a 415 that says
//! why; a body that is not the message is a 400.

#![cfg(feature = "protobuf")]

use std::sync::Arc;

use micro::client::CallOptions;
use micro::codec::ContentType;
use micro::registry::{MemoryRegistry, Registry};
use micro::{Client, Error, Result, ServiceHandle, handler, service};
use micro_tests::RawClient;
use prost::Message as _;
use serde::{Deserialize, Serialize};

/// A request, as prost-build would generate it from
/// `message HelloRequest { string name = 1; uint32 times = 2; }`, with
/// serde derived too.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
struct HelloRequest {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(uint32, tag = "2")]
    #[serde(default)]
    times: u32,
}

/// `message HelloReply { string message = 1; repeated string echoes = 2; }`
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
struct HelloReply {
    #[prost(string, tag = "1")]
    message: String,
    #[prost(string, repeated, tag = "2")]
    echoes: Vec<String>,
}

/// A protobuf-only message: no serde.
#[derive(Clone, PartialEq, prost::Message)]
struct Ping {
    #[prost(int64, tag = "1")]
    n: i64,
}

struct Greeter;

#[service(protobuf, package = "greeter.v1")]
impl Greeter {
    /// Says hello, `times` times.
    #[handler]
    async fn say_hello(&self, req: HelloRequest) -> Result<HelloReply> {
        if req.name.is_empty() {
            return Err(Error::bad_request("name is required"));
        }
        Ok(HelloReply {
            message: format!("Hello {}", req.name),
            echoes: (0..req.times)
                .map(|i| format!("{} #{i}", req.name))
                .collect(),
        })
    }

    /// Adds one, in protobuf only.
    #[handler]
    async fn ping(&self, ping: Ping) -> Result<Ping> {
        Ok(Ping { n: ping.n + 1 })
    }

    /// Takes nothing, returns protobuf's empty message.
    #[handler]
    async fn nothing(&self) -> Result<()> {
        Ok(())
    }
}

async fn greeter(registry: Arc<dyn Registry>) -> ServiceHandle {
    micro::Service::new("greeter")
        .address("127.0.0.1:0")
        .registry(registry)
        .handle(Greeter)
        .start()
        .await
        .expect("service starts")
}

fn hello(name: &str, times: u32) -> Vec<u8> {
    HelloRequest {
        name: name.into(),
        times,
    }
    .encode_to_vec()
}

#[tokio::test]
async fn protobuf_json_and_msgpack_from_one_service() {
    let svc = greeter(Arc::new(MemoryRegistry::new())).await;
    let raw = RawClient::new();

    // Hand-made bytes, as any protobuf library writes them: field 1
    // "alice", field 2 = 2.
    let body = b"\x0a\x05alice\x10\x02".to_vec();
    assert_eq!(body, hello("alice", 2));
    for ct in ["application/protobuf", "application/x-protobuf"] {
        let rsp = raw
            .call(
                svc.local_addr(),
                "Greeter.SayHello",
                &[("content-type", ct)],
                body.clone(),
            )
            .await;
        assert_eq!(rsp.status, 200, "{ct}: {:?}", rsp.body);
        assert_eq!(rsp.header("content-type"), Some("application/protobuf"));
        let reply = HelloReply::decode(&rsp.body[..]).unwrap();
        assert_eq!(reply.message, "Hello alice");
        assert_eq!(reply.echoes, ["alice #0", "alice #1"]);
    }

    // JSON in, protobuf out, as Accept asks.
    let rsp = raw
        .call(
            svc.local_addr(),
            "Greeter.SayHello",
            &[
                ("content-type", "application/json"),
                ("accept", "application/protobuf"),
            ],
            r#"{"name":"bob"}"#,
        )
        .await;
    assert_eq!(rsp.status, 200, "{:?}", rsp.body);
    assert_eq!(rsp.header("content-type"), Some("application/protobuf"));
    assert_eq!(
        HelloReply::decode(&rsp.body[..]).unwrap().message,
        "Hello bob"
    );

    // The same endpoint in JSON and MessagePack.
    let rsp = raw
        .call(
            svc.local_addr(),
            "Greeter.SayHello",
            &[("content-type", "application/json")],
            r#"{"name":"carol","times":1}"#,
        )
        .await;
    assert_eq!(rsp.status, 200);
    assert_eq!(
        rsp.json(),
        serde_json::json!({"message": "Hello carol", "echoes": ["carol #0"]})
    );
    let packed = rmp_serde::to_vec_named(&HelloRequest {
        name: "dan".into(),
        times: 0,
    })
    .unwrap();
    let rsp = raw
        .call(
            svc.local_addr(),
            "Greeter.SayHello",
            &[("content-type", "application/msgpack")],
            packed,
        )
        .await;
    assert_eq!(rsp.status, 200);
    let reply: HelloReply = rmp_serde::from_slice(&rsp.body).unwrap();
    assert_eq!(reply.message, "Hello dan");

    // A handler's error is the error JSON, whatever the request's codec.
    let rsp = raw
        .call(
            svc.local_addr(),
            "Greeter.SayHello",
            &[("content-type", "application/protobuf")],
            Vec::new(),
        )
        .await;
    assert_eq!(rsp.expect_error(400), "name is required");

    // No request and the empty reply: an empty body both ways.
    let rsp = raw
        .call(
            svc.local_addr(),
            "Greeter.Nothing",
            &[("content-type", "application/protobuf")],
            Vec::new(),
        )
        .await;
    assert_eq!(rsp.status, 200);
    assert!(rsp.body.is_empty(), "{:?}", rsp.body);
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn bad_protobuf_is_400_and_protobuf_only_types_refuse_json() {
    let svc = greeter(Arc::new(MemoryRegistry::new())).await;
    let raw = RawClient::new();
    let addr = svc.local_addr();
    let protobuf = [("content-type", "application/protobuf")];

    // Bytes that are not the message: a length past the end, a string
    // that is not UTF-8, a wire type that is not valid.
    for garbage in [
        &b"\x0a\x09al"[..],
        &b"\x0a\x02\xff\xfe"[..],
        &b"\x0f\x01"[..],
    ] {
        let rsp = raw
            .call(addr, "Greeter.SayHello", &protobuf, garbage.to_vec())
            .await;
        let detail = rsp.expect_error(400);
        assert!(
            detail.starts_with("decoding application/protobuf body"),
            "{detail}"
        );
    }

    // A protobuf-only type: protobuf works, JSON is refused with why.
    let rsp = raw
        .call(
            addr,
            "Greeter.Ping",
            &protobuf,
            Ping { n: 41 }.encode_to_vec(),
        )
        .await;
    assert_eq!(rsp.status, 200);
    assert_eq!(Ping::decode(&rsp.body[..]).unwrap().n, 42);
    let rsp = raw
        .call(
            addr,
            "Greeter.Ping",
            &[("content-type", "application/json")],
            r#"{"n":1}"#,
        )
        .await;
    let detail = rsp.expect_error(415);
    assert!(
        detail.contains("application/json is not available for")
            && detail.contains("Ping")
            && detail.contains("send application/protobuf"),
        "{detail}"
    );
    // Asking for a JSON reply of a protobuf-only type is refused too.
    let rsp = raw
        .call(
            addr,
            "Greeter.Ping",
            &[
                ("content-type", "application/protobuf"),
                ("accept", "application/json"),
            ],
            Ping { n: 1 }.encode_to_vec(),
        )
        .await;
    rsp.expect_error(415);

    // The server is still up.
    let rsp = raw
        .call(addr, "Greeter.SayHello", &protobuf, hello("eve", 0))
        .await;
    assert_eq!(rsp.status, 200);
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn typed_client_speaks_protobuf_and_the_registry_says_so() {
    let registry: Arc<dyn Registry> = Arc::new(MemoryRegistry::new());
    let svc = greeter(registry.clone()).await;
    let client = GreeterClient::new(
        "greeter",
        Client::builder().registry(registry.clone()).build(),
    );

    // By name, protobuf by default: the protobuf-only endpoint works.
    assert_eq!(client.ping(Ping { n: 1 }).await.unwrap().n, 2);
    let reply = client
        .say_hello(HelloRequest {
            name: "alice".into(),
            times: 1,
        })
        .await
        .unwrap();
    assert_eq!(reply.message, "Hello alice");
    assert_eq!(reply.echoes, ["alice #0"]);
    client.nothing().await.unwrap();

    // Another codec when the call asks for one.
    for ct in [ContentType::Json, ContentType::MsgPack] {
        let reply = client
            .say_hello_with(
                HelloRequest {
                    name: "bob".into(),
                    times: 0,
                },
                CallOptions::new().content_type(ct),
            )
            .await
            .unwrap();
        assert_eq!(reply.message, "Hello bob", "{ct}");
        // ... which a protobuf-only type cannot have.
        let err = client
            .ping_with(Ping { n: 1 }, CallOptions::new().content_type(ct))
            .await
            .unwrap_err();
        assert_eq!(err.code(), 415, "{err}");
    }

    // A handler's error comes back as itself.
    let err = client.say_hello(HelloRequest::default()).await.unwrap_err();
    assert_eq!((err.code(), err.detail()), (400, "name is required"));

    // The registry records which protobuf service each endpoint is in.
    let services = registry.get_service("greeter").await.unwrap();
    let endpoints = &services[0].endpoints;
    assert_eq!(endpoints.len(), 3);
    for endpoint in endpoints {
        assert_eq!(
            endpoint.metadata.get("protobuf").map(String::as_str),
            Some("greeter.v1.Greeter"),
            "{}",
            endpoint.name
        );
    }
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn curl_sends_a_binary_body() {
    let svc = greeter(Arc::new(MemoryRegistry::new())).await;
    let dir = std::env::temp_dir().join(format!("micro-protobuf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let request = dir.join("request.bin");
    std::fs::write(&request, hello("alice", 1)).unwrap();
    let url = format!("http://{}/", svc.local_addr());
    let addr = svc.local_addr().to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args([
                "-sS",
                "--fail-with-body",
                "-H",
                "Content-Type: application/protobuf",
                "-H",
                "Micro-Endpoint: Greeter.SayHello",
                "--data-binary",
            ])
            .arg(format!("@{}", request.display()))
            .arg(&url)
            .output()
            .expect("curl runs (apt install curl)")
    })
    .await
    .unwrap();
    assert!(output.status.success(), "curl to {addr}: {output:?}");
    let reply = HelloReply::decode(&output.stdout[..]).unwrap();
    assert_eq!(reply.message, "Hello alice");
    assert_eq!(reply.echoes, ["alice #0"]);
    std::fs::remove_dir_all(&dir).ok();
    svc.stop().await.unwrap();
}
