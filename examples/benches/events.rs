//! Run with: cargo bench -p micro-examples --features nats,redis --bench events
//!
//! Durable events per second through micro's NATS JetStream and Redis
//! streams backends against the raw client doing the same work (async-nats,
//! redis-rs), in one process and one run, as ratios: publishing a small
//! JSON event with an id and a content type and waiting for the server's
//! ack (16 publishers), then consuming them as one member of a group from
//! the beginning, decoding and acking each. Each side runs `ROUNDS` rounds
//! on a topic of its own, in turn; the best round of each is kept.
//!
//! On NATS both sides wait for the server to confirm each ack (JetStream's
//! double ack), so that an ack that returned is not lost.
//!
//! On Redis the raw side is `XADD` with the same fields and a server-made
//! id, then `XREADGROUP` in batches of 64 and an `XACK` per event: micro's
//! publish with an id is a Lua script instead, which also keeps the id for
//! deduplication; `publish+` compares it with the raw client running a
//! script that deduplicates the same way, and `publish*` is micro
//! publishing without an id, one `XADD` as on the raw side.
//!
//! The servers are at `MICRO_TEST_NATS` (default `nats://127.0.0.1:4222`)
//! and `MICRO_TEST_REDIS` (default `redis://127.0.0.1:6379`); a server that
//! cannot be reached is skipped, and says so. `BENCH_EVENTS` sets the
//! events per round (default 10000).

use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream::{self, consumer, message::PublishMessage};
use futures_util::StreamExt;
use micro::events::{ConsumeOptions, NatsEvents, RedisEvents, Start, Topics};
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

/// The best publish and consume rates of micro and of the raw client.
#[derive(Default)]
struct Best {
    /// Publishing without a publisher's id (Redis only: the same on NATS).
    micro_publish_new: f64,
    micro_publish: f64,
    micro_consume: f64,
    raw_publish: f64,
    /// Redis only: the raw client deduplicating as micro does.
    raw_publish_dedup: f64,
    raw_consume: f64,
}

impl Best {
    fn keep(&mut self, mp: f64, mc: f64, rp: f64, rc: f64) {
        self.micro_publish = self.micro_publish.max(mp);
        self.micro_consume = self.micro_consume.max(mc);
        self.raw_publish = self.raw_publish.max(rp);
        self.raw_consume = self.raw_consume.max(rc);
    }

    fn print(&self, backend: &str) {
        if self.micro_publish_new > 0.0 {
            let (m, r) = (self.micro_publish_new, self.raw_publish);
            println!(
                "{backend:<7} {:<9} {m:>10.0} {r:>10.0} {:>6.2}x",
                "publish*",
                m / r
            );
        }
        if self.raw_publish_dedup > 0.0 {
            let (m, r) = (self.micro_publish, self.raw_publish_dedup);
            println!(
                "{backend:<7} {:<9} {m:>10.0} {r:>10.0} {:>6.2}x",
                "publish+",
                m / r
            );
        }
        for (what, m, r) in [
            ("publish", self.micro_publish, self.raw_publish),
            ("consume", self.micro_consume, self.raw_consume),
        ] {
            println!("{backend:<7} {what:<9} {m:>10.0} {r:>10.0} {:>6.2}x", m / r);
        }
    }
}

/// Consumes `n` events of `topic` as group `group` through micro; events/s.
async fn micro_consume(topics: &Topics, topic: &str, group: &str, n: u64) -> f64 {
    let started = Instant::now();
    let options = ConsumeOptions::group(group).start(Start::Beginning);
    let mut deliveries = topics.consume(topic, options).await.unwrap();
    for _ in 0..n {
        let d = deliveries.next().await.unwrap().unwrap();
        let _: Order = d.decode().unwrap();
        d.ack().await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Publishes `n` events to `topic` through micro with ids; events/s.
async fn micro_publish(topics: &Topics, topic: &str, ids: String, n: u64) -> f64 {
    let (t, p) = (topic.to_owned(), topics.clone());
    publish_rate(n, move |i| {
        let (t, p, id) = (t.clone(), p.clone(), format!("{ids}-{i}"));
        async move {
            p.publish_with_id(&t, &id, &order(i)).await.unwrap();
        }
    })
    .await
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    println!(
        "{:<7} {:<9} {:>10} {:>10} {:>7}",
        "backend", "events", "micro/s", "raw/s", "ratio"
    );
    nats(n).await;
    redis(n).await;
}

async fn nats(n: u64) {
    let url = std::env::var("MICRO_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let Ok(client) = async_nats::connect(url.as_str()).await else {
        println!("nats: skipped, no NATS server at {url}");
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

    let mut best = Best::default();
    for round in 0..ROUNDS {
        // micro
        let topic = format!("bench.t{run}r{round}");
        let mp = micro_publish(&topics, &topic, format!("{run}-{round}"), n).await;
        let group = format!("bench-{run}-{round}");
        let mc = micro_consume(&topics, &topic, &group, n).await;

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
            // Confirmed by the server, as micro's ack is.
            m.double_ack().await.unwrap();
        }
        let rc = n as f64 / started.elapsed().as_secs_f64();
        drop(messages);
        let _ = raw_stream.delete_consumer(&name).await;
        if let Ok(s) = js.get_stream("MICRO_EVENTS").await {
            let escaped = format!("bench-{run}-{round}__bench_2Et{run}r{round}");
            let _ = s.delete_consumer(&escaped).await;
            let _ = s.purge().filter(format!("micro.events.{topic}")).await;
        }
        best.keep(mp, mc, rp, rc);
    }
    let _ = js.delete_stream(format!("BENCH_RAW_{run}")).await;
    if let Ok(s) = js.get_stream("MICRO_EVENTS").await {
        let _ = s
            .purge()
            .filter(format!("micro.events.bench.t{run}r>"))
            .await;
    }
    best.print("nats");
}

async fn redis(n: u64) {
    let url = std::env::var("MICRO_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let client = redis::Client::open(url.as_str()).unwrap();
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        println!("redis: skipped, no Redis server at {url}");
        return;
    };
    let run = std::process::id();
    let topics = Topics::new(Arc::new(RedisEvents::new(&url).unwrap()));
    let mut best = Best::default();
    let mut keys = Vec::new();
    for round in 0..ROUNDS {
        // micro
        let topic = format!("bench.t{run}r{round}");
        let mp = micro_publish(&topics, &topic, format!("{run}-{round}"), n).await;
        let mc = micro_consume(&topics, &topic, "bench", n).await;
        let fresh = format!("bench.t{run}r{round}new");
        let (t, p) = (fresh.clone(), topics.clone());
        let mpn = publish_rate(n, move |i| {
            let (t, p) = (t.clone(), p.clone());
            async move {
                p.publish(&t, &order(i)).await.unwrap();
            }
        })
        .await;
        best.micro_publish_new = best.micro_publish_new.max(mpn);
        keys.push(format!("micro:events:{{{fresh}}}"));

        // raw redis-rs
        let key = format!("bench:raw:{run}:{round}");
        let (k, c) = (key.clone(), conn.clone());
        let rp = publish_rate(n, move |i| {
            let (k, mut c) = (k.clone(), c.clone());
            async move {
                let _: String = redis::cmd("XADD")
                    .arg(&k)
                    .arg("*")
                    .arg("i")
                    .arg(format!("{run}-{round}-{i}"))
                    .arg("c")
                    .arg("application/json")
                    .arg("p")
                    .arg(serde_json::to_vec(&order(i)).unwrap())
                    .query_async(&mut c)
                    .await
                    .unwrap();
            }
        })
        .await;
        // raw redis-rs with the same deduplication: a script that keeps
        // each id's entry id for two minutes and answers a repeated id
        // with it.
        let dedup = Arc::new(redis::Script::new(
            r"
            local seen = redis.call('GET', KEYS[2])
            if seen then return seen end
            local entry = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
            redis.call('SET', KEYS[2], entry, 'PX', ARGV[1])
            return entry",
        ));
        let dedup_key = format!("bench:rawdedup:{run}:{round}");
        let (k, c) = (dedup_key.clone(), conn.clone());
        let rpd = publish_rate(n, move |i| {
            let (k, mut c, script) = (k.clone(), c.clone(), dedup.clone());
            async move {
                let id = format!("{run}-{round}-{i}");
                let _: String = script
                    .key(&k)
                    .key(format!("{k}:id:{id}"))
                    .arg(120_000)
                    .arg("i")
                    .arg(&id)
                    .arg("c")
                    .arg("application/json")
                    .arg("p")
                    .arg(serde_json::to_vec(&order(i)).unwrap())
                    .invoke_async(&mut c)
                    .await
                    .unwrap();
            }
        })
        .await;
        best.raw_publish_dedup = best.raw_publish_dedup.max(rpd);
        keys.push(dedup_key);

        let started = Instant::now();
        let () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&key)
            .arg("bench")
            .arg("0-0")
            .query_async(&mut conn)
            .await
            .unwrap();
        let mut reader = client.get_multiplexed_async_connection().await.unwrap();
        let mut done = 0;
        while done < n {
            let reply: redis::Value = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("bench")
                .arg("raw")
                .arg("COUNT")
                .arg(64)
                .arg("BLOCK")
                .arg(100)
                .arg("STREAMS")
                .arg(&key)
                .arg(">")
                .query_async(&mut reader)
                .await
                .unwrap();
            for (id, payload) in entries(reply) {
                let _: Order = serde_json::from_slice(&payload).unwrap();
                let _: i64 = redis::cmd("XACK")
                    .arg(&key)
                    .arg("bench")
                    .arg(id)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                done += 1;
            }
        }
        let rc = n as f64 / started.elapsed().as_secs_f64();
        best.keep(mp, mc, rp, rc);
        keys.push(key);
        let tagged = format!("micro:events:{{{topic}}}");
        keys.extend([format!("{tagged}:due"), tagged]);
    }
    let _: Result<i64, _> = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
    // The dedup keys expire by themselves.
    best.print("redis");
}

/// The ids and payloads of an `XREADGROUP` reply for one stream.
fn entries(reply: redis::Value) -> Vec<(Vec<u8>, Vec<u8>)> {
    use redis::Value::{Array, BulkString};
    let Array(streams) = reply else {
        return Vec::new();
    };
    let Some(Array(stream)) = streams.into_iter().next() else {
        return Vec::new();
    };
    let Some(Array(entries)) = stream.into_iter().nth(1) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Array(parts) = entry else { continue };
        let mut parts = parts.into_iter();
        if let (Some(BulkString(id)), Some(Array(fields))) = (parts.next(), parts.next()) {
            let payload = fields.chunks(2).find_map(|kv| match kv {
                [BulkString(k), BulkString(v)] if k == b"p" => Some(v.clone()),
                _ => None,
            });
            out.push((id, payload.unwrap_or_default()));
        }
    }
    out
}
