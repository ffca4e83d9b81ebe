//! Run with: cargo run --example events
//!
//! An order pipeline on durable events. `Orders.Place` publishes each
//! order to `orders.placed` once it is stored; two groups consume it:
//! billing (which fails twice on order 2 before it succeeds, and never
//! manages an order of `"poison"`, which is dead-lettered after three
//! attempts) and shipping, both the service's consumers, acking on `Ok`
//! and retrying on an error. Ops reads the dead letters by hand. In memory by
//! default; on NATS JetStream with one variable once it is built in:
//!
//! ```text
//! MICRO_EVENTS=nats MICRO_EVENTS_ADDRESS=nats://127.0.0.1:4222 \
//!     cargo run --example events --features nats
//! ```
//!
//! Serves on 127.0.0.1:8083 (or `MICRO_SERVER_ADDRESS`):
//!
//! ```text
//! curl -H 'Content-Type: application/json' -H 'Micro-Endpoint: Orders.Place' -d '{"id": 1, "item": "tea"}' http://localhost:8083
//! curl -H 'Content-Type: application/json' -H 'Micro-Endpoint: Orders.Place' -d '{"id": 2, "item": "coffee"}' http://localhost:8083
//! curl -H 'Content-Type: application/json' -H 'Micro-Endpoint: Orders.Place' -d '{"id": 3, "item": "poison"}' http://localhost:8083
//! ```

use std::time::Duration;

use futures_util::StreamExt;
use micro::events::{
    Backoff, ConsumeOptions, Consumer, DeadLetter, Delivered, Deliveries, Start, Topics,
};
use micro::{Backends, Context, Error, Result, handler, service};
use serde::{Deserialize, Serialize};

const PLACED: &str = "orders.placed";

#[derive(Debug, Serialize, Deserialize)]
struct Order {
    id: u32,
    item: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Placed {
    sequence: u64,
}

struct Orders;

#[service]
impl Orders {
    /// `Orders.Place`: stores the order as an event; answers once it is
    /// stored, with its sequence. Publishing the same order id twice
    /// within two minutes stores it once.
    #[handler]
    async fn place(&self, ctx: Context, order: Order) -> Result<Placed> {
        let events = ctx.events()?;
        let id = format!("order-{}", order.id);
        let published = events.publish_with_id(PLACED, &id, &order).await?;
        Ok(Placed {
            sequence: published.sequence,
        })
    }
}

/// Charges an order: `Ok` acks; an error nacks (retried after the
/// backoff, dead-lettered after the third attempt).
async fn bill(order: Order, delivery: Delivered) -> Result<()> {
    let attempt = delivery.attempt();
    let charged = if order.item == "poison" {
        Err(Error::bad_gateway("the card was declined"))
    } else if order.id == 2 && attempt < 3 {
        Err(Error::unavailable("the bank is busy"))
    } else {
        Ok(())
    };
    match &charged {
        Ok(()) => println!("billing: charged order {} (attempt {attempt})", order.id),
        Err(e) => println!(
            "billing: order {} failed (attempt {attempt}): {}",
            order.id,
            e.detail()
        ),
    }
    charged
}

/// Ships an order.
async fn ship(order: Order, _: Delivered) -> Result<()> {
    println!("shipping: shipped order {} ({})", order.id, order.item);
    Ok(())
}

/// Reads the dead letters.
async fn ops(mut deliveries: Deliveries) {
    while let Some(Ok(delivery)) = deliveries.next().await {
        if let Some(dead) = DeadLetter::of(delivery.event()) {
            let order = delivery.decode::<Order>().map(|o| o.id).unwrap_or_default();
            println!(
                "ops: order {order} dead-lettered by {} after {} attempts: {}",
                dead.group, dead.attempts, dead.error
            );
        }
        let _ = delivery.ack().await;
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt::init();
    let backends = Backends::default();
    let topics = Topics::new(backends.events().clone());
    println!("events on {}", topics.backend().name());

    // Ops reads the dead letters by hand; billing and shipping are the
    // service's consumers, settled by their functions' results.
    let from_start = |group: &str| ConsumeOptions::group(group).start(Start::Beginning);
    let dead = format!("{PLACED}.dead");
    tokio::spawn(ops(topics.consume(&dead, from_start("ops")).await?));
    let billing = Consumer::new(PLACED, bill).options(
        from_start("billing")
            .max_attempts(3)
            .backoff(Backoff::fixed(Duration::from_millis(200))),
    );
    let shipping = Consumer::new(PLACED, ship).options(from_start("shipping"));

    micro::Service::new("orders")
        .address("127.0.0.1:8083")
        .backends(&backends)
        .handle(Orders)
        .consume(billing)
        .consume(shipping)
        .run()
        .await
}
