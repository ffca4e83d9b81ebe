//! Run with: cargo run --example pubsub
//!
//! Events between services over the default broker (HTTP, found through
//! mDNS). With no argument it runs a subscriber service and publishes five
//! events to it; `-- subscribe` only subscribes (until Ctrl-C), and
//! `-- publish` only publishes, so the two sides can run as two processes.

use std::time::Duration;

use micro::client::{CallOptions, Publisher};
use micro::{Context, Result, service, subscribe};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct UserCreated {
    id: u64,
    email: String,
}

/// Every process that links this function subscribes it: each instance
/// gets every event.
#[subscribe("user.created")]
async fn welcome(ctx: Context, ev: UserCreated) -> Result<()> {
    let by = ctx.metadata().get("x-user").unwrap_or("someone");
    println!(
        "welcome: sending a welcome mail to {} (created by {by})",
        ev.email
    );
    Ok(())
}

/// A subscriber with state, in a queue group: with several instances, each
/// event reaches one of them.
struct Stats {
    count: std::sync::atomic::AtomicU64,
}

#[service]
impl Stats {
    #[subscribe("user.created", queue = "stats")]
    async fn count(&self, ev: UserCreated) -> Result<()> {
        let n = self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        println!("stats: user {} is user number {n}", ev.id);
        Ok(())
    }
}

async fn publish() -> Result<()> {
    // A publisher finds subscribers through the registry; a fresh one's
    // first publish waits for mDNS's first answers.
    let client = micro::Client::new();
    let users: Publisher<UserCreated> = Publisher::new("user.created", client);
    for id in 1..=5 {
        let ev = UserCreated {
            id,
            email: format!("user{id}@example.com"),
        };
        let options = CallOptions::new().metadata("x-user", "admin");
        let published = users.publish_with(&ev, options).await?;
        match published.delivered {
            Some(n) => println!("published user {id} to {n} subscribers"),
            None => println!("published user {id}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt::init();
    let mode = std::env::args().nth(1).unwrap_or_default();
    if mode == "publish" {
        return publish().await;
    }
    let service = micro::Service::new("pubsub")
        .handle(Stats {
            count: std::sync::atomic::AtomicU64::new(0),
        })
        .start()
        .await?;
    if mode == "subscribe" {
        micro::service::shutdown_signal().await;
    } else {
        publish().await?;
    }
    service.stop().await
}
