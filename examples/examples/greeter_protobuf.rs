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

use micro_examples::greeter::Greeter;

#[tokio::main]
async fn main() -> micro::Result<()> {
    tracing_subscriber::fmt::init();

    micro::Service::new("greeter")
        .address("127.0.0.1:8080")
        .handle(Greeter)
        .run()
        .await
}
