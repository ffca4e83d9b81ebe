//! Events in a service: a handler publishes through its context, a
//! consumer in the service's default group gets them, and a publisher
//! whose backend is down gets an error, never `Ok`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use micro::events::{Events, MemoryEvents, Start, Topics};
use micro::{Backends, Context, Result, handler, service};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Order {
    id: u32,
    item: String,
}

/// Takes orders and publishes them.
struct Shop;

#[service]
impl Shop {
    /// `Shop.Order`: stores the order as an event; returns its sequence.
    #[handler]
    async fn order(&self, ctx: Context, order: Order) -> Result<u64> {
        let events = ctx.events()?;
        Ok(events.publish("shop.orders", &order).await?.sequence)
    }

    /// `Shop.Group`: the group the service's consumers use by default.
    #[handler]
    async fn group(&self, ctx: Context) -> Result<String> {
        Ok(ctx.events()?.options().group)
    }
}

#[tokio::test]
async fn a_handler_publishes_events_that_a_consumer_in_its_group_acks() {
    let events: Arc<dyn Events> = Arc::new(MemoryEvents::new());
    let backends = Backends::memory().with_events(events.clone());
    let svc = micro::Service::new("shop")
        .address("127.0.0.1:0")
        .backends(&backends)
        .handle(Shop)
        .start()
        .await
        .unwrap();
    let client = ShopClient::new("shop", micro::Client::builder().backends(&backends).build());
    let opts = || micro::client::CallOptions::new().address(svc.local_addr().to_string());
    assert_eq!(
        client.group_with(opts()).await.unwrap(),
        "shop",
        "the service's name"
    );
    for id in 1..=3 {
        let order = Order {
            id,
            item: "tea".into(),
        };
        assert_eq!(
            client.order_with(order, opts()).await.unwrap(),
            u64::from(id)
        );
    }
    let topics = Topics::new(events);
    let options = topics.options();
    assert_eq!(options.group, "default", "a bare handle's group");
    let options = micro::events::ConsumeOptions::group("shop").start(Start::Beginning);
    let mut orders = topics.consume("shop.orders", options).await.unwrap();
    for id in 1..=3 {
        let d = tokio::time::timeout(Duration::from_secs(5), orders.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(d.decode::<Order>().unwrap().id, id);
        d.ack().await.unwrap();
    }
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn a_context_outside_a_service_has_no_events() {
    let err = Context::new().events().unwrap_err();
    assert_eq!(err.code(), 500);
}

#[cfg(feature = "nats")]
#[tokio::test]
async fn a_publish_to_a_nats_server_that_is_down_is_an_error_not_ok() {
    // Nothing listens on port 1 of loopback.
    let topics = Topics::new(Arc::new(micro::events::NatsEvents::new(
        "nats://127.0.0.1:1",
    )));
    let err = topics.publish("orders.created", &1).await.unwrap_err();
    assert_eq!(err.code(), 503, "{err}");
    assert!(err.detail().contains("127.0.0.1:1"), "{err}");
    let err = topics
        .consume("orders.created", micro::events::ConsumeOptions::group("g"))
        .await
        .err()
        .expect("consuming fails too");
    assert_eq!(err.code(), 503);
}
