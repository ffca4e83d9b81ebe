//! Run with: cargo run --example helloworld_client [-- NAME]
//!
//! Calls `Helloworld.Greeting` on the helloworld example through the
//! generated typed client, at 127.0.0.1:8080 (or `MICRO_SERVER_ADDRESS`),
//! and prints the reply.

use micro::client::CallOptions;
use micro_examples::helloworld::{HelloworldClient, Request};

#[tokio::main]
async fn main() -> micro::Result<()> {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "alice".to_owned());
    let address =
        std::env::var("MICRO_SERVER_ADDRESS").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());

    let hello = HelloworldClient::new("helloworld", micro::Client::new());
    let rsp = hello
        .greeting_with(Request { name }, CallOptions::new().address(address))
        .await?;
    println!("{}", rsp.message);
    Ok(())
}
