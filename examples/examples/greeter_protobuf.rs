//! Run with: cargo run -p micro-examples --features protobuf --example greeter_protobuf
//!
//! Serves `greeter.v1.Greeter` (examples/proto/greeter.proto) on
//! 127.0.0.1:8080 (or `MICRO_SERVER_ADDRESS`): gRPC, protobuf, JSON and
//! MessagePack, all on that one port.
//!
//! As gRPC, from any gRPC client; with grpcurl, through reflection:
//!
//! ```text
//! grpcurl -plaintext localhost:8080 list
//! grpcurl -plaintext -d '{"name": "alice", "times": 2}' localhost:8080 greeter.v1.Greeter/SayHello
//! grpcurl -plaintext -d '{"name": "alice", "times": 3}' localhost:8080 greeter.v1.Greeter/LotsOfReplies
//! ```
//!
//! With a binary protobuf body over micro's HTTP wire:
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

use micro_examples::greeter::{DESCRIPTORS, Greeter};

#[tokio::main]
async fn main() -> micro::Result<()> {
    tracing_subscriber::fmt::init();

    micro::Service::new("greeter")
        .address("127.0.0.1:8080")
        // greeter.proto's descriptors: gRPC reflection can then describe
        // the methods and messages, not only list the service.
        .file_descriptor_set(DESCRIPTORS)
        .handle(Greeter)
        .run()
        .await
}
