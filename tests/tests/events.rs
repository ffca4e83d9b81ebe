//! Events in a service: a handler publishes through its context, a
//! consumer in the service's default group gets them, and a publisher
//! whose backend is down gets an error, never `Ok`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use micro::events::{Events, MemoryEvents, Start, Topics};
use micro::{Backends, Context, Result, consume, handler, service};
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

/// The next delivery, within 5 s.
async fn next_delivery(deliveries: &mut micro::events::Deliveries) -> micro::events::Delivery {
    tokio::time::timeout(Duration::from_secs(5), deliveries.next())
        .await
        .expect("a delivery within 5 s")
        .expect("the deliveries go on")
        .expect("no error")
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
        let d = next_delivery(&mut orders).await;
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

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_publish_to_a_redis_server_that_is_down_is_an_error_not_ok() {
    // Nothing listens on port 1 of loopback.
    let events = micro::events::RedisEvents::new("redis://127.0.0.1:1").unwrap();
    down_is_503(Topics::new(Arc::new(events))).await;
    // And a URL Redis does not take is a clear 400 from the start.
    let err = micro::events::RedisEvents::new("http://nope").unwrap_err();
    assert!(err.to_string().contains("http://nope"), "{err}");
}

#[cfg(feature = "nats")]
#[tokio::test]
async fn a_publish_to_a_nats_server_that_is_down_is_an_error_not_ok() {
    // Nothing listens on port 1 of loopback.
    let events = micro::events::NatsEvents::new("nats://127.0.0.1:1");
    down_is_503(Topics::new(Arc::new(events))).await;
}

/// Publishing and consuming on `topics`, whose server at 127.0.0.1:1 is
/// down: 503s naming it, never `Ok`.
#[cfg(any(feature = "nats", feature = "redis"))]
async fn down_is_503(topics: Topics) {
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

/// Kills a member of a group with SIGKILL while it holds unacked events
/// (of 10,000) on the backend `kind` at `url`, and checks that another
/// member acks every event, each at most twice, the second time only for
/// those in flight at the kill. Returns the topic and the group.
#[cfg(any(feature = "nats", feature = "redis"))]
async fn a_killed_member_loses_nothing(kind: &str, url: &str) -> (String, String) {
    use std::collections::{BTreeMap, BTreeSet};
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};

    /// A member process, killed if the test fails first.
    struct Member(Child);
    impl Drop for Member {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    const EVENTS: u32 = 10_000;
    let topic = format!("crash.t{}", std::process::id());
    let group = format!("crash-{}", std::process::id());
    let vars = [
        ("MICRO_REGISTRY", "memory"),
        ("MICRO_BROKER", "memory"),
        ("MICRO_EVENTS", kind),
        ("MICRO_EVENTS_ADDRESS", url),
    ];
    let backends = micro::Backends::from_vars(|name| {
        (vars.iter().find(|(n, _)| *n == name)).map(|(_, v)| (*v).to_owned())
    });
    assert_eq!(backends.events().name(), kind);
    let topics = Topics::new(backends.events().clone());
    for i in 0..EVENTS {
        topics.publish(&topic, &i).await.expect("stored");
    }

    // Each member's events, as it reads and acks them: `(acked, n)`.
    let spawn = || -> (Member, std::sync::mpsc::Receiver<(bool, u32)>) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_events_consumer"))
            .args([&topic, &group])
            .envs(vars)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the consumer starts");
        let out = BufReader::new(child.stdout.take().unwrap());
        let (sender, acks) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                let seen = match line.split_once(' ') {
                    Some(("got", n)) => (false, n.parse().unwrap()),
                    Some(("acked", n)) => (true, n.parse().unwrap()),
                    _ => continue,
                };
                let _ = sender.send(seen);
            }
        });
        (Member(child), acks)
    };
    let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
    let mut unsettled = BTreeSet::new();
    // Counts an ack, or notes an event read and not acked yet.
    let record = |counts: &mut BTreeMap<u32, u32>, unsettled: &mut BTreeSet<u32>, seen| {
        let (acked, n): (bool, u32) = seen;
        if acked {
            *counts.entry(n).or_default() += 1;
            unsettled.remove(&n);
        } else {
            unsettled.insert(n);
        }
        counts.len()
    };
    let (mut first, events) = spawn();
    while record(
        &mut counts,
        &mut unsettled,
        (events.recv_timeout(Duration::from_secs(20))).expect("acks go on"),
    ) < 2_000
    {}
    first.0.kill().expect("SIGKILL"); // std's kill is SIGKILL
    first.0.wait().unwrap();
    while let Ok(seen) = events.try_recv() {
        record(&mut counts, &mut unsettled, seen);
    }
    // Read but with no ack seen at the kill: acked or not, the server knows.
    let in_flight = std::mem::take(&mut unsettled);

    let (mut second, events) = spawn();
    let settled = |counts: &BTreeMap<u32, u32>| {
        (0..EVENTS).all(|n| counts.contains_key(&n) || in_flight.contains(&n))
    };
    while !settled(&counts) {
        let seen = events.recv_timeout(Duration::from_secs(20));
        let seen =
            seen.unwrap_or_else(|_| panic!("only {} of {EVENTS} events acked", counts.len()));
        record(&mut counts, &mut unsettled, seen);
    }
    // A moment for any late redelivery to show.
    while let Ok(seen) = events.recv_timeout(Duration::from_secs(3)) {
        record(&mut counts, &mut unsettled, seen);
    }
    second.0.kill().unwrap();
    second.0.wait().unwrap();

    let twice: Vec<u32> = (counts.iter())
        .filter(|(_, c)| **c > 1)
        .map(|(n, _)| *n)
        .collect();
    let unseen: Vec<u32> = (0..EVENTS).filter(|n| !counts.contains_key(n)).collect();
    println!(
        "{kind}: {} in flight at the kill; {} acked twice; {} acked only in flight",
        in_flight.len(),
        twice.len(),
        unseen.len()
    );
    // Not seen acked: only events whose ack the kill cut off from the
    // output; the server's word on them is the caller's check.
    assert!(
        unseen.iter().all(|n| in_flight.contains(n)),
        "lost: {unseen:?}"
    );
    assert!(counts.values().all(|c| *c <= 2), "none more than twice");
    // Only events in flight at the kill come twice: those the first member
    // had pulled (at most one batch) and acked without the server seeing it.
    assert!(twice.len() <= 1_000, "{} duplicates", twice.len());
    (topic, group)
}

#[cfg(feature = "nats")]
#[tokio::test]
#[cfg_attr(
    not(micro_test_nats),
    ignore = "needs a NATS server with JetStream: set MICRO_TEST_NATS=nats://127.0.0.1:4222"
)]
async fn a_nats_consumer_killed_with_sigkill_loses_nothing_its_group_gets_every_event() {
    let url = std::env::var("MICRO_TEST_NATS").expect("MICRO_TEST_NATS names the server");
    let (topic, group) = a_killed_member_loses_nothing("nats", &url).await;

    // The group's consumer on the server, removed.
    let client = async_nats::connect(url.as_str()).await.unwrap();
    let stream = async_nats::jetstream::new(client)
        .get_stream("MICRO_EVENTS")
        .await
        .unwrap();
    let name = format!("{group}__{}", topic.replace('.', "_2E"));
    // Every event acked on the server: none pending, none unread.
    let mut consumer: async_nats::jetstream::consumer::PullConsumer =
        stream.get_consumer(&name).await.unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!((info.num_ack_pending, info.num_pending), (0, 0), "{info:?}");
    stream
        .delete_consumer(&name)
        .await
        .expect("the group's durable consumer exists");
    // And its events, so that the server does not grow run by run.
    stream
        .purge()
        .filter(format!("micro.events.{topic}"))
        .await
        .unwrap();
}

#[cfg(feature = "redis")]
#[tokio::test]
#[cfg_attr(
    not(micro_test_redis),
    ignore = "needs a Redis server: set MICRO_TEST_REDIS=redis://127.0.0.1:6379"
)]
async fn a_redis_consumer_killed_with_sigkill_loses_nothing_its_group_gets_every_event() {
    let url = std::env::var("MICRO_TEST_REDIS").expect("MICRO_TEST_REDIS names the server");
    let (topic, group) = a_killed_member_loses_nothing("redis", &url).await;
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // Every event acked on the server: none pending, none unread.
    let stream = format!("micro:events:{{{topic}}}");
    let (pending, ..): (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg(&stream)
        .arg(&group)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pending, 0, "nothing pending");
    let groups: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&stream)
        .query_async(&mut conn)
        .await
        .unwrap();
    let ours = (groups.iter())
        .find(|g| g.get("name") == Some(&redis::Value::BulkString(group.clone().into_bytes())))
        .expect("the group is on the server");
    assert_eq!(
        (ours.get("entries-read"), ours.get("lag")),
        (
            Some(&redis::Value::Int(10_000)),
            Some(&redis::Value::Int(0))
        ),
        "all read: {ours:?}"
    );
    // The topic's keys, so that the server does not grow run by run.
    let deleted =
        micro_tests::delete_redis_keys(&mut conn, &format!("micro:events:{{{topic}}}*")).await;
    assert!(deleted > 0);
}

#[tokio::test]
async fn a_services_consumer_acks_on_ok_retries_on_err_and_dead_letters_a_bad_payload() {
    use micro::events::{Backoff, ConsumeOptions, Consumer, DeadLetter, Delivered};
    use std::sync::atomic::{AtomicU32, Ordering};

    let events: Arc<dyn Events> = Arc::new(MemoryEvents::new());
    let backends = Backends::memory().with_events(events.clone());
    let calls = Arc::new(AtomicU32::new(0));
    let (done, mut billed) = tokio::sync::mpsc::unbounded_channel();
    let consumer = {
        let calls = calls.clone();
        Consumer::new("shop.orders", move |order: Order, d: Delivered| {
            let (calls, done) = (calls.clone(), done.clone());
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                d.in_progress().await?;
                // Fails twice, then succeeds: retried, not lost.
                if order.item == "flaky" && d.attempt() < 3 {
                    return Err(micro::Error::unavailable("try later"));
                }
                done.send((order.id, d.attempt(), d.group().to_owned()))
                    .unwrap();
                Ok(())
            }
        })
        .options(
            ConsumeOptions::group("billing")
                .start(Start::Beginning)
                .backoff(Backoff::fixed(Duration::from_millis(20))),
        )
    };
    let svc = micro::Service::new("billing")
        .address("127.0.0.1:0")
        .backends(&backends)
        .consume(consumer)
        .start()
        .await
        .unwrap();
    let topics = Topics::new(events);
    let order = |id, item: &str| Order {
        id,
        item: item.into(),
    };
    topics
        .publish("shop.orders", &order(1, "tea"))
        .await
        .unwrap();
    topics
        .publish("shop.orders", &order(2, "flaky"))
        .await
        .unwrap();
    topics
        .publish("shop.orders", &"not an order")
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(
            tokio::time::timeout(Duration::from_secs(5), billed.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(
        got,
        [(1, 1, "billing".to_owned()), (2, 3, "billing".to_owned())]
    );
    let mut dead = topics
        .consume(
            "shop.orders.dead",
            ConsumeOptions::group("ops").start(Start::Beginning),
        )
        .await
        .unwrap();
    let letter = next_delivery(&mut dead).await;
    let why = DeadLetter::of(letter.event()).unwrap();
    assert_eq!(why.attempts, 1, "a payload that does not decode: at once");
    assert!(why.error.contains("400"), "{}", why.error);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "tea once, flaky three times; the bad payload never reached the function"
    );
    svc.stop().await.unwrap();
}

/// What the `#[consume]` functions below saw: (who, value, attempt, group).
static SEEN: std::sync::Mutex<Vec<(&'static str, u32, u32, String)>> =
    std::sync::Mutex::new(Vec::new());

#[consume("dsl.free", group = "dsl-free", start = "beginning", backoff = "10ms")]
async fn free_consumer(n: u32, d: micro::events::Delivered) -> Result<()> {
    SEEN.lock()
        .unwrap()
        .push(("free", n, d.attempt(), d.group().to_owned()));
    if d.attempt() < 2 {
        return Err(micro::Error::unavailable("once more"));
    }
    Ok(())
}

/// Consumes in its service's own group.
struct Ledger;

#[service]
impl Ledger {
    #[consume("dsl.orders", start = "beginning", max_attempts = 2, ack_wait = "5s")]
    async fn record(&self, order: Order) -> Result<()> {
        SEEN.lock()
            .unwrap()
            .push(("method", order.id, 0, String::new()));
        Ok(())
    }
}

#[tokio::test]
async fn consume_attributes_run_in_the_service_free_functions_and_methods_alike() {
    use micro::events::{ConsumeOptions, DeadLetter};

    let events: Arc<dyn Events> = Arc::new(MemoryEvents::new());
    let topics = Topics::new(events.clone());
    topics.publish("dsl.free", &7u32).await.unwrap();
    topics
        .publish(
            "dsl.orders",
            &Order {
                id: 9,
                item: "ink".into(),
            },
        )
        .await
        .unwrap();
    topics.publish("dsl.orders", &"not an order").await.unwrap();
    let svc = micro::Service::new("ledger")
        .address("127.0.0.1:0")
        .backends(&Backends::memory().with_events(events))
        .handle(Ledger)
        .start()
        .await
        .unwrap();
    let mut dead = topics
        .consume(
            "dsl.orders.dead",
            ConsumeOptions::group("ops").start(Start::Beginning),
        )
        .await
        .unwrap();
    let letter = next_delivery(&mut dead).await;
    let why = DeadLetter::of(letter.event()).unwrap();
    assert_eq!(
        why.group, "ledger",
        "a method's default group is its service's name"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = SEEN.lock().unwrap().clone();
    assert!(seen.contains(&("method", 9, 0, String::new())), "{seen:?}");
    assert!(
        seen.contains(&("free", 7, 1, "dsl-free".to_owned())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("free", 7, 2, "dsl-free".to_owned())),
        "retried after the backoff: {seen:?}"
    );
    svc.stop().await.unwrap();
}
