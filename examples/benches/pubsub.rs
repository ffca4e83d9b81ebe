//! Run with: cargo bench -p micro-examples --features nats --bench pubsub
//!
//! Messages per second and publish-to-handler latency, in one process and
//! one run:
//! - the HTTP broker (the default), one subscriber service, publishing
//!   with 1 and 64 publishes in flight;
//! - the NATS broker against raw async-nats publish/subscribe of the same
//!   payload, on the server at `MICRO_TEST_NATS` (default
//!   `nats://127.0.0.1:4222`); the NATS rows are skipped, saying so, when
//!   it cannot be reached. Each NATS row runs three rounds in turn and
//!   the best is kept; "published" is the rate of the publishing loop
//!   alone, "delivered" the rate until the subscriber has decoded all.
//!
//! - the RabbitMQ broker (feature `rabbitmq`) against raw lapin doing the
//!   same work, on the server at `MICRO_TEST_RABBITMQ` (default
//!   `amqp://127.0.0.1:5672/%2f`): persistent messages with id, content
//!   type and a header, each publish waiting for RabbitMQ's confirm (64 in
//!   flight), consumed from an exclusive queue bound to the topic exchange,
//!   decoded and acknowledged. Three rounds in turn, the best kept.
//!
//! - the MQTT broker (feature `mqtt`) against raw rumqttc doing the same
//!   work, on the broker at `MICRO_TEST_MQTT` (default
//!   `mqtt://127.0.0.1:1883`): QoS 1 with the id and a header as user
//!   properties and the content type, each publish waiting for the
//!   broker's `PUBACK` (16 in flight), read by a subscriber on its own
//!   connection and decoded. Three rounds in turn, the best kept.
//!
//! `BENCH_MESSAGES` sets the messages per row (default 20000).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use micro::Client;
use micro::broker::{Broker, HttpBroker, Message, NatsBroker, SubscribeOptions, handler};
use micro::registry::MemoryRegistry;
use serde::{Deserialize, Serialize};

/// When each message was published, in nanoseconds since `epoch()`.
#[derive(Serialize, Deserialize)]
struct Event {
    sent: u64,
    name: String,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// What the subscriber side saw.
#[derive(Default)]
struct Sink {
    received: AtomicUsize,
    latencies: Mutex<Vec<u64>>,
}

impl Sink {
    fn record(&self, ev: &Event) {
        self.latencies
            .lock()
            .unwrap()
            .push(now().saturating_sub(ev.sent));
        self.received.fetch_add(1, Ordering::SeqCst);
    }

    async fn wait_for(&self, n: usize) {
        let started = Instant::now();
        while self.received.load(Ordering::SeqCst) < n {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "messages missing"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }

    fn report(&self, name: &str, n: usize, took: Duration) -> f64 {
        let mut lat = std::mem::take(&mut *self.latencies.lock().unwrap());
        lat.sort_unstable();
        let pct = |p: f64| {
            Duration::from_nanos(lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)])
        };
        let rate = n as f64 / took.as_secs_f64();
        println!(
            "{name:<32} {rate:>10.0} msg/s   p50 {:>8.1?}   p99 {:>8.1?}",
            pct(0.5),
            pct(0.99)
        );
        self.received.store(0, Ordering::SeqCst);
        rate
    }
}

fn event() -> Event {
    Event {
        sent: now(),
        name: "alice".to_owned(),
    }
}

async fn http_broker(n: usize) {
    let registry = Arc::new(MemoryRegistry::new());
    let sink = Arc::new(Sink::default());
    let s = sink.clone();
    let service = micro::Service::new("sink")
        .address("127.0.0.1:0")
        .registry(registry.clone())
        .broker(Arc::new(HttpBroker::new(registry.clone())))
        .subscribe(
            "bench.http",
            SubscribeOptions::default(),
            handler(move |msg: Message| {
                let s = s.clone();
                async move {
                    s.record(&msg.decode::<Event>()?);
                    Ok(())
                }
            }),
        )
        .start()
        .await
        .unwrap();
    let client = Client::builder()
        .registry(registry.clone())
        .broker(Arc::new(HttpBroker::new(registry)))
        .build();
    for in_flight in [1, 64] {
        let started = Instant::now();
        let next = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..in_flight)
            .map(|_| {
                let (client, next) = (client.clone(), next.clone());
                tokio::spawn(async move {
                    while next.fetch_add(1, Ordering::SeqCst) < n {
                        client.publish("bench.http", &event()).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        sink.wait_for(n).await;
        sink.report(
            &format!("http broker, {in_flight} in flight"),
            n,
            started.elapsed(),
        );
    }
    service.stop().await.unwrap();
}

/// How many times each NATS row runs, in turn; the best round is kept.
const ROUNDS: usize = 3;

/// One way of publishing to NATS and its subscriber's sink.
struct NatsRow {
    name: &'static str,
    sink: Arc<Sink>,
    best: f64,
    best_publish: f64,
}

async fn nats(url: &str, n: usize) {
    // micro's NATS broker, subscribing with a handler.
    let subscriber = NatsBroker::new(url);
    if let Err(e) = subscriber.connect().await {
        println!("nats rows skipped: {e}");
        return;
    }
    let row = |name| NatsRow {
        name,
        sink: Arc::new(Sink::default()),
        best: 0.0,
        best_publish: 0.0,
    };
    let mut rows = [
        row("nats broker (micro)"),
        row("raw async-nats"),
        row("raw async-nats with headers"),
    ];
    let s = rows[0].sink.clone();
    let _sub = subscriber
        .subscribe(
            "bench.nats",
            handler(move |msg: Message| {
                let s = s.clone();
                async move {
                    s.record(&msg.decode::<Event>()?);
                    Ok(())
                }
            }),
            SubscribeOptions::default(),
        )
        .await
        .unwrap();
    let client = Client::builder()
        .broker(Arc::new(NatsBroker::new(url)))
        .build();

    // Raw async-nats subscribers, decoding the same JSON payload.
    let sub_client = async_nats::connect(url).await.unwrap();
    for (subject, row) in ["bench.raw", "bench.rawh"].into_iter().zip(&rows[1..]) {
        let mut raw_sub = sub_client.subscribe(subject).await.unwrap();
        let rs = row.sink.clone();
        tokio::spawn(async move {
            while let Some(msg) = raw_sub.next().await {
                let ev: Event = serde_json::from_slice(&msg.payload).unwrap();
                rs.record(&ev);
            }
        });
    }
    sub_client.flush().await.unwrap();
    let pub_client = async_nats::connect(url).await.unwrap();

    for _ in 0..ROUNDS {
        for (side, row) in rows.iter_mut().enumerate() {
            let started = Instant::now();
            match side {
                0 => {
                    for _ in 0..n {
                        client.publish("bench.nats", &event()).await.unwrap();
                    }
                    client.broker().disconnect().await.unwrap();
                }
                1 => {
                    for _ in 0..n {
                        let body = serde_json::to_vec(&event()).unwrap();
                        pub_client.publish("bench.raw", body.into()).await.unwrap();
                    }
                    pub_client.flush().await.unwrap();
                }
                _ => {
                    // The headers micro sends: Micro-Id (a fresh UUID, as
                    // micro's ids are) and Content-Type.
                    for _ in 0..n {
                        let body = serde_json::to_vec(&event()).unwrap();
                        let mut headers = async_nats::HeaderMap::new();
                        let id = uuid::Uuid::new_v4().hyphenated().to_string();
                        headers.insert("Micro-Id", id.as_str());
                        headers.insert("Content-Type", "application/json");
                        pub_client
                            .publish_with_headers("bench.rawh", headers, body.into())
                            .await
                            .unwrap();
                    }
                    pub_client.flush().await.unwrap();
                }
            }
            let published = n as f64 / started.elapsed().as_secs_f64();
            row.sink.wait_for(n).await;
            let rate = row.sink.report(row.name, n, started.elapsed());
            row.best = row.best.max(rate);
            row.best_publish = row.best_publish.max(published);
        }
    }
    for row in &rows {
        println!(
            "{:<32} best {:>10.0} msg/s delivered, {:>10.0} msg/s published",
            row.name, row.best, row.best_publish
        );
    }
    println!(
        "nats broker / raw async-nats: {:.2}x (with the same headers: {:.2}x; publishing alone: {:.2}x)",
        rows[0].best / rows[1].best,
        rows[0].best / rows[2].best,
        rows[0].best_publish / rows[2].best_publish,
    );
}

#[cfg(feature = "rabbitmq")]
async fn rabbitmq(url: &str, n: usize) {
    use lapin::options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
        ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    };
    use lapin::types::{AMQPValue, FieldTable, LongString};
    use micro::broker::RabbitBroker;

    let subscriber = RabbitBroker::new(url);
    if let Err(e) = subscriber.connect().await {
        println!("rabbitmq rows skipped: {e}");
        return;
    }
    let micro_sink = Arc::new(Sink::default());
    let s = micro_sink.clone();
    let _sub = subscriber
        .subscribe(
            "bench.rabbit.micro",
            handler(move |msg: Message| {
                let s = s.clone();
                async move {
                    s.record(&msg.decode::<Event>()?);
                    Ok(())
                }
            }),
            SubscribeOptions::default(),
        )
        .await
        .unwrap();
    let client = Client::builder()
        .broker(Arc::new(RabbitBroker::new(url)))
        .build();

    // Raw lapin: the same exchange, an exclusive queue, manual acks.
    let connection = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let consume = connection.create_channel().await.unwrap();
    consume
        .basic_qos(64, lapin::options::BasicQosOptions::default())
        .await
        .unwrap();
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    consume
        .exchange_declare(
            "micro".into(),
            lapin::ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await
        .unwrap();
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    let queue = consume
        .queue_declare("".into(), exclusive, FieldTable::default())
        .await
        .unwrap();
    consume
        .queue_bind(
            queue.name().clone(),
            "micro".into(),
            "bench.rabbit.raw".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut consumer = consume
        .basic_consume(
            queue.name().clone(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let raw_sink = Arc::new(Sink::default());
    let rs = raw_sink.clone();
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            let ev: Event = serde_json::from_slice(&delivery.data).unwrap();
            rs.record(&ev);
            delivery.ack(BasicAckOptions::default()).await.unwrap();
        }
    });
    let publish = connection.create_channel().await.unwrap();
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();

    let mut best = [0.0f64; 2];
    for _ in 0..ROUNDS {
        for (side, name) in ["rabbitmq broker (micro)", "raw lapin"]
            .into_iter()
            .enumerate()
        {
            let started = Instant::now();
            let sink = if side == 0 { &micro_sink } else { &raw_sink };
            futures_util::stream::iter(0..n)
                .for_each_concurrent(64, |_| {
                    let (client, publish) = (&client, &publish);
                    async move {
                        if side == 0 {
                            client
                                .publish_with(
                                    "bench.rabbit.micro",
                                    &event(),
                                    micro::client::CallOptions::new().metadata("x-tenant", "acme"),
                                )
                                .await
                                .unwrap();
                        } else {
                            let body = serde_json::to_vec(&event()).unwrap();
                            let mut headers = FieldTable::default();
                            headers.insert(
                                "x-tenant".into(),
                                AMQPValue::LongString(LongString::from("acme")),
                            );
                            let id = uuid::Uuid::new_v4().hyphenated().to_string();
                            let properties = lapin::BasicProperties::default()
                                .with_message_id(id.into())
                                .with_content_type("application/json".into())
                                .with_delivery_mode(2)
                                .with_headers(headers);
                            let options = BasicPublishOptions {
                                mandatory: true,
                                ..BasicPublishOptions::default()
                            };
                            publish
                                .basic_publish(
                                    "micro".into(),
                                    "bench.rabbit.raw".into(),
                                    options,
                                    &body,
                                    properties,
                                )
                                .await
                                .unwrap()
                                .await
                                .unwrap();
                        }
                    }
                })
                .await;
            sink.wait_for(n).await;
            let rate = sink.report(name, n, started.elapsed());
            best[side] = best[side].max(rate);
        }
    }
    println!(
        "rabbitmq broker / raw lapin: {:.2}x (best of {ROUNDS} rounds each: {:.0} vs {:.0} msg/s)",
        best[0] / best[1],
        best[0],
        best[1]
    );
}

#[cfg(feature = "mqtt")]
async fn mqtt(url: &str, n: usize) {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
    use rumqttc::v5::{AsyncClient, MqttOptions};

    let subscriber = micro::broker::MqttBroker::new(url);
    if let Err(e) = subscriber.connect().await {
        println!("mqtt rows skipped: {e}");
        return;
    }
    let micro_sink = Arc::new(Sink::default());
    let s = micro_sink.clone();
    let subscribed = subscriber
        .subscribe(
            "bench.mqtt.micro",
            handler(move |msg: Message| {
                let s = s.clone();
                async move {
                    s.record(&msg.decode::<Event>()?);
                    Ok(())
                }
            }),
            SubscribeOptions::default(),
        )
        .await;
    let _sub = match subscribed {
        Ok(sub) => sub,
        Err(e) => {
            println!("mqtt rows skipped: {e}");
            return;
        }
    };
    let client = Client::builder()
        .broker(Arc::new(micro::broker::MqttBroker::new(url)))
        .build();

    // Raw rumqttc: a subscriber connection and a publisher connection, the
    // publisher's PUBACKs releasing its in-flight permits.
    let (host, port) = url
        .trim_start_matches("mqtt://")
        .rsplit_once(':')
        .map_or(("127.0.0.1", 1883), |(h, p)| (h, p.parse().unwrap_or(1883)));
    let (raw_sub, mut sub_events) =
        AsyncClient::new(MqttOptions::new("bench-raw-sub", host, port), 1024);
    let raw_sink = Arc::new(Sink::default());
    let rs = raw_sink.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready_tx = Some(ready_tx);
    tokio::spawn(async move {
        loop {
            let event = match sub_events.poll().await {
                Ok(event) => event,
                Err(e) => {
                    println!("raw rumqttc subscriber: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match event {
                rumqttc::v5::Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
                rumqttc::v5::Event::Incoming(Packet::Publish(p)) => {
                    let ev: Event = serde_json::from_slice(&p.payload).unwrap();
                    rs.record(&ev);
                }
                _ => {}
            }
        }
    });
    raw_sub
        .subscribe("bench/mqtt/raw", QoS::AtLeastOnce)
        .await
        .unwrap();
    ready_rx.await.unwrap();
    let (raw_pub, mut pub_events) =
        AsyncClient::new(MqttOptions::new("bench-raw-pub", host, port), 1024);
    let permits = Arc::new(tokio::sync::Semaphore::new(16));
    let released = permits.clone();
    tokio::spawn(async move {
        while let Ok(event) = pub_events.poll().await {
            if let rumqttc::v5::Event::Incoming(Packet::PubAck(_)) = event {
                released.add_permits(1);
            }
        }
    });

    let mut best = [0.0f64; 2];
    for _ in 0..ROUNDS {
        for (side, name) in ["mqtt broker (micro)", "raw rumqttc"]
            .into_iter()
            .enumerate()
        {
            let started = Instant::now();
            let sink = if side == 0 { &micro_sink } else { &raw_sink };
            if side == 0 {
                futures_util::stream::iter(0..n)
                    .for_each_concurrent(16, |_| {
                        let client = &client;
                        async move {
                            client
                                .publish_with(
                                    "bench.mqtt.micro",
                                    &event(),
                                    micro::client::CallOptions::new().metadata("x-tenant", "acme"),
                                )
                                .await
                                .unwrap();
                        }
                    })
                    .await;
            } else {
                for _ in 0..n {
                    permits.acquire().await.unwrap().forget();
                    let body = serde_json::to_vec(&event()).unwrap();
                    let id = uuid::Uuid::new_v4().hyphenated().to_string();
                    let properties = PublishProperties {
                        content_type: Some("application/json".to_owned()),
                        user_properties: vec![
                            ("micro-id".to_owned(), id),
                            ("x-tenant".to_owned(), "acme".to_owned()),
                        ],
                        ..PublishProperties::default()
                    };
                    raw_pub
                        .publish_with_properties(
                            "bench/mqtt/raw",
                            QoS::AtLeastOnce,
                            false,
                            body,
                            properties,
                        )
                        .await
                        .unwrap();
                }
                // Every PUBACK in.
                let _all = permits.acquire_many(16).await.unwrap();
            }
            // A broker drops QoS 1 messages past its queue limit for a
            // slow subscriber (Mosquitto's max_queued_messages): count what
            // came within a bound rather than wait for all.
            let deadline = Instant::now() + Duration::from_secs(10);
            while sink.received.load(Ordering::SeqCst) < n && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let got = sink.received.load(Ordering::SeqCst);
            if got < n {
                println!(
                    "{name}: {} of {n} not delivered (dropped by the broker)",
                    n - got
                );
            }
            let rate = sink.report(name, got, started.elapsed());
            best[side] = best[side].max(rate);
        }
    }
    println!(
        "mqtt broker / raw rumqttc: {:.2}x (best of {ROUNDS} rounds each: {:.0} vs {:.0} msg/s)",
        best[0] / best[1],
        best[0],
        best[1]
    );
}

fn main() {
    let n: usize = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let url =
        std::env::var("MICRO_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    epoch();
    rt.block_on(async {
        http_broker(n).await;
        nats(&url, n).await;
        #[cfg(feature = "rabbitmq")]
        {
            let url = std::env::var("MICRO_TEST_RABBITMQ")
                .unwrap_or_else(|_| "amqp://127.0.0.1:5672/%2f".to_owned());
            rabbitmq(&url, n).await;
        }
        #[cfg(feature = "mqtt")]
        {
            let url = std::env::var("MICRO_TEST_MQTT")
                .unwrap_or_else(|_| "mqtt://127.0.0.1:1883".to_owned());
            mqtt(&url, n).await;
        }
    });
}
