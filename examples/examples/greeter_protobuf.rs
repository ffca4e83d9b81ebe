//! Run with: cargo run -p micro-examples --features protobuf --example greeter_protobuf
//!
//! Serves `greeter.v1.Greeter` (examples/proto/greeter.proto) on
//! 127.0.0.1:8080 (or `MICRO_SERVER_ADDRESS`), speaking protobuf, JSON and
//! MessagePack at once. Call it with a binary protobuf body:
//!
//! ```text
//! printf '\x0a\x05alice\x10\x02' | curl -sS --data-binary @- \
//!      -H 'Content-Type: application/protobuf' -H 'Micro-Endpoint: Greeter.SayHello' \
//!      http://localhost:8080 | protoc --decode=greeter.v1.HelloReply examples/proto/greeter.proto
//! ```
//!
//! or with JSON, as any other micro service:
//!
//! ```text
//! curl -XPOST -H 'Content-Type: application/json' -H 'Micro-Endpoint: Greeter.SayHello' \
//!      -d '{"name": "alice", "times": 2}' http://localhost:8080
//! ```

use micro::{Error, Result, handler, service};
use serde::{Deserialize, Serialize};

/// `greeter.v1.HelloRequest`, as prost-build generates it from the
/// `.proto`, with serde derived too (prost-build's `type_attribute`) so
/// that curl can send JSON.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct HelloRequest {
    /// Who to greet.
    #[prost(string, tag = "1")]
    pub name: String,
    /// How many echoes of the name the reply carries.
    #[prost(uint32, tag = "2")]
    #[serde(default)]
    pub times: u32,
}

/// `greeter.v1.HelloReply`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct HelloReply {
    /// The greeting.
    #[prost(string, tag = "1")]
    pub message: String,
    /// The echoes asked for.
    #[prost(string, repeated, tag = "2")]
    pub echoes: Vec<String>,
}

/// The `Greeter` service of package `greeter.v1`.
struct Greeter;

#[service(protobuf, package = "greeter.v1")]
impl Greeter {
    /// Greets `name`, with `times` echoes.
    #[handler]
    async fn say_hello(&self, req: HelloRequest) -> Result<HelloReply> {
        if req.name.is_empty() {
            return Err(Error::bad_request("name must not be empty"));
        }
        if req.times > 100 {
            return Err(Error::bad_request("times must be at most 100"));
        }
        Ok(HelloReply {
            message: format!("Hello {}", req.name),
            echoes: (1..=req.times)
                .map(|i| format!("{} {i}", req.name))
                .collect(),
        })
    }
}

#[tokio::main]
async fn main() -> micro::Result<()> {
    tracing_subscriber::fmt::init();

    micro::Service::new("greeter")
        .address("127.0.0.1:8080")
        .handle(Greeter)
        .run()
        .await
}
