//! Run with: cargo run --example helloworld_client [-- NAME]
//!
//! Calls `Helloworld.Greeting` on the helloworld example through the
//! generated typed client and prints the reply. It finds the service by
//! name through the default registry (mDNS), or calls
//! `MICRO_SERVER_ADDRESS` directly when that is set.

use std::time::Duration;

use micro::client::CallOptions;
use micro_examples::helloworld::{HelloworldClient, Request};

#[tokio::main]
async fn main() -> micro::Result<()> {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "alice".to_owned());
    let mut options = CallOptions::new();
    if let Ok(address) = std::env::var("MICRO_SERVER_ADDRESS") {
        options = options.address(address);
    }

    let hello = HelloworldClient::new("helloworld", micro::Client::new());
    // mDNS answers within a second or so of the first lookup; until then
    // the service is not found (503), so try for a few seconds.
    let mut tries = 0;
    let rsp = loop {
        match hello
            .greeting_with(Request { name: name.clone() }, options.clone())
            .await
        {
            Err(e) if e.code() == 503 && tries < 30 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            result => break result?,
        }
    };
    println!("{}", rsp.message);
    Ok(())
}
