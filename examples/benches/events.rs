//! Run with: cargo bench -p micro-examples --features nats --bench events
//!
//! Durable events per second through micro's NATS JetStream backend
//! against raw async-nats doing the same work, in one process and one run,
//! as ratios: publishing a small JSON event with an id and a content type
//! and waiting for the stream's ack (16 publishers), then consuming them as
//! a durable pull consumer from the beginning, decoding and acking each.
//! Each side runs `ROUNDS` rounds on a topic of its own, in turn; the best
//! round of each is kept. The server is at `MICRO_TEST_NATS` (default
//! `nats://127.0.0.1:4222`); `BENCH_EVENTS` sets the events per round
//! (default 10000).

use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream::{self, consumer, message::PublishMessage};
use futures_util::StreamExt;
use micro::events::{ConsumeOptions, NatsEvents, Start, Topics};
use serde::{Deserialize, Serialize};

const ROUNDS: u32 = 3;
const PUBLISHERS: u64 = 16;

#[derive(Serialize, Deserialize)]
struct Order {
    id: u64,
    item: String,
}

fn order(id: u64) -> Order {
    Order {
        id,
        item: format!("item number {id}"),
    }
}

/// Runs `publish(i)` for `i` in `0..n` from 16 tasks; events/s.
async fn publish_rate<F, Fut>(n: u64, publish: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let publish = Arc::new(publish);
    let started = Instant::now();
    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|t| {
            let publish = publish.clone();
            tokio::spawn(async move {
                let mut i = t;
                while i < n {
                    publish(i).await;
                    i += PUBLISHERS;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let url = std::env::var("MICRO_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let Ok(client) = async_nats::connect(url.as_str()).await else {
        println!("events: skipped, no NATS server at {url}");
        return;
    };
    let run = std::process::id();
    let topics = Topics::new(Arc::new(NatsEvents::with_client(client.clone())));
    let js = jetstream::new(client);
    // The raw side's own stream, shaped as micro's.
    let raw_stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: format!("BENCH_RAW_{run}"),
            subjects: vec![format!("bench.raw.{run}.>")],
            duplicate_window: std::time::Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .unwrap();

    let (mut best_mp, mut best_mc, mut best_rp, mut best_rc) = (0f64, 0f64, 0f64, 0f64);
    for round in 0..ROUNDS {
        // micro
        let topic = format!("bench.t{run}r{round}");
        let (t, p) = (topic.clone(), topics.clone());
        let mp = publish_rate(n, move |i| {
            let (t, p) = (t.clone(), p.clone());
            async move {
                p.publish_with_id(&t, &format!("{run}-{round}-{i}"), &order(i))
                    .await
                    .unwrap();
            }
        })
        .await;
        let started = Instant::now();
        let group = format!("bench-{run}-{round}");
        let options = ConsumeOptions::group(&group).start(Start::Beginning);
        let mut deliveries = topics.consume(&topic, options).await.unwrap();
        for _ in 0..n {
            let d = deliveries.next().await.unwrap().unwrap();
            let _: Order = d.decode().unwrap();
            d.ack().await.unwrap();
        }
        let mc = n as f64 / started.elapsed().as_secs_f64();
        drop(deliveries);

        // raw async-nats
        let subject = format!("bench.raw.{run}.r{round}");
        let (s, j) = (subject.clone(), js.clone());
        let rp = publish_rate(n, move |i| {
            let (s, j) = (s.clone(), j.clone());
            async move {
                let message = PublishMessage::build()
                    .payload(serde_json::to_vec(&order(i)).unwrap().into())
                    .message_id(format!("{run}-{round}-{i}"))
                    .header("Content-Type", "application/json");
                j.send_publish(s, message).await.unwrap().await.unwrap();
            }
        })
        .await;
        let started = Instant::now();
        let name = format!("raw-{run}-{round}");
        let consumer: consumer::PullConsumer = raw_stream
            .get_or_create_consumer(
                &name,
                consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: subject,
                    ack_policy: consumer::AckPolicy::Explicit,
                    deliver_policy: consumer::DeliverPolicy::All,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let mut messages = consumer.messages().await.unwrap();
        for _ in 0..n {
            let m = messages.next().await.unwrap().unwrap();
            let _info = m.info().unwrap();
            let _: Order = serde_json::from_slice(&m.payload).unwrap();
            m.ack().await.unwrap();
        }
        let rc = n as f64 / started.elapsed().as_secs_f64();
        drop(messages);
        let _ = raw_stream.delete_consumer(&name).await;
        if let Ok(s) = js.get_stream("MICRO_EVENTS").await {
            let escaped = format!("bench-{run}-{round}__bench_2Et{run}r{round}");
            let _ = s.delete_consumer(&escaped).await;
        }
        best_mp = best_mp.max(mp);
        best_mc = best_mc.max(mc);
        best_rp = best_rp.max(rp);
        best_rc = best_rc.max(rc);
    }
    let _ = js.delete_stream(format!("BENCH_RAW_{run}")).await;
    println!(
        "{:<10} {:>10} {:>10} {:>7}",
        "events", "micro/s", "raw/s", "ratio"
    );
    for (what, m, r) in [("publish", best_mp, best_rp), ("consume", best_mc, best_rc)] {
        println!("{what:<10} {m:>10.0} {r:>10.0} {:>6.2}x", m / r);
    }
}
