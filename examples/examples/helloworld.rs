//! Run with: cargo run --example helloworld
//!
//! Serves the helloworld service on 127.0.0.1:8080 (or
//! `MICRO_SERVER_ADDRESS`). Call it with curl:
//!
//! ```text
//! curl -XPOST -H 'Content-Type: application/json' -H 'Micro-Endpoint: Helloworld.Greeting' \
//!      -d '{"name": "alice"}' http://localhost:8080
//! ```

use micro_examples::helloworld::Helloworld;

#[tokio::main]
async fn main() -> micro::Result<()> {
    tracing_subscriber::fmt::init();

    micro::Service::new("helloworld")
        .address("127.0.0.1:8080")
        .handle(Helloworld)
        .run()
        .await
}
