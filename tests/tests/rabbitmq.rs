//! The RabbitMQ broker against the real RabbitMQ at `MICRO_TEST_RABBITMQ`,
//! beyond the broker conformance suite: a plain AMQP client (Python's
//! pika) on the other end, queue groups across processes, a handler that
//! keeps failing dead-lettered (RabbitMQ restarted under publishing is in
//! rabbitmq_restart.rs, a binary of its own so that no other test's
//! connection drops with it). Ignored, saying so in the summary, when the variable is not
//! set.
#![cfg(feature = "rabbitmq")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use micro::Client;
use micro::broker::{Broker, Message, RabbitBroker, SubscribeOptions, handler};
use micro::client::CallOptions;
use micro_tests::numbers_seen_by;
use micro_tests::process::Greeter as Process;

/// The server these tests use; they are ignored unless it is set.
fn server() -> String {
    std::env::var("MICRO_TEST_RABBITMQ")
        .ok()
        .filter(|url| !url.is_empty())
        .expect("set MICRO_TEST_RABBITMQ=amqp://host:5672/%2f to run the RabbitMQ tests")
}

use micro_tests::{unique_topic as topic, wait_until as wait_for};

type Seen = Arc<Mutex<Vec<u32>>>;

#[tokio::test]
#[cfg_attr(
    not(micro_test_rabbitmq),
    ignore = "needs RabbitMQ: set MICRO_TEST_RABBITMQ=amqp://127.0.0.1:5672/%2f"
)]
async fn a_pika_client_reads_and_writes_micro_messages() {
    let url = server();
    assert!(
        micro_tests::python_has("pika"),
        "MICRO_TEST_RABBITMQ is set but python3 cannot import pika (pip install pika)"
    );
    let to_python = topic("to-python");
    let from_python = topic("from-python");
    let broker = RabbitBroker::new(&url);
    // (payload, x-user, id) of each message pika sent.
    type Got = Vec<(u32, Option<String>, String)>;
    let seen: Arc<Mutex<Got>> = Arc::default();
    let log = seen.clone();
    let sub = broker
        .subscribe(
            &from_python,
            handler(move |msg: Message| {
                let log = log.clone();
                async move {
                    let n: u32 = msg.decode()?;
                    let user = msg.metadata.get("x-user").map(str::to_owned);
                    log.lock().unwrap().push((n, user, msg.id.clone()));
                    Ok(())
                }
            }),
            SubscribeOptions::default(),
        )
        .await
        .unwrap();
    // pika binds its own queue to micro's exchange, reads micro's message,
    // then publishes two of its own to micro's subscriber.
    let script = r#"
import json, sys, pika
url, to_python, from_python = sys.argv[1:]
conn = pika.BlockingConnection(pika.URLParameters(url))
ch = conn.channel()
ch.exchange_declare("micro", exchange_type="topic", durable=True)
q = ch.queue_declare("", exclusive=True).method.queue
ch.queue_bind(q, "micro", routing_key=to_python)
print("ready", flush=True)
for method, props, body in ch.consume(q, inactivity_timeout=10):
    if method is None:
        sys.exit("nothing from micro within 10 s")
    print("payload", json.loads(body)["n"])
    print("content-type", props.content_type)
    print("x-user", props.headers.get("x-user"))
    print("id", "yes" if props.message_id else "no")
    ch.basic_ack(method.delivery_tag)
    break
ch.cancel()
ch.confirm_delivery()
ch.basic_publish("micro", from_python, b"7",
    pika.BasicProperties(content_type="application/json", headers={"x-user": "py"}, message_id="py-7"))
ch.basic_publish("micro", from_python, b"8")
conn.close()
"#;
    #[derive(serde::Serialize)]
    struct Payload {
        n: u32,
    }
    let client = Client::builder()
        .broker(Arc::new(RabbitBroker::new(&url)))
        .build();
    let out = micro_tests::python_peer(script, &[&url, &to_python, &from_python], async {
        client
            .publish_with(
                &to_python,
                &Payload { n: 42 },
                CallOptions::new().metadata("x-user", "micro"),
            )
            .await
            .unwrap();
    })
    .await;
    assert_eq!(
        out,
        [
            "payload 42",
            "content-type application/json",
            "x-user micro",
            "id yes"
        ]
    );
    wait_for("both of pika's messages", Duration::from_secs(10), || {
        seen.lock().unwrap().len() >= 2
    })
    .await;
    let mut got = seen.lock().unwrap().clone();
    got.sort();
    assert_eq!(got[0], (7, Some("py".to_owned()), "py-7".to_owned()));
    assert_eq!(got[1].0, 8);
    assert!(!got[1].2.is_empty(), "a message without an id gets one");
    sub.unsubscribe().await.unwrap();
}

fn subscriber_process(url: &str, topic: &str, queue: Option<&str>) -> Process {
    micro_tests::subscriber_process(
        env!("CARGO_BIN_EXE_subscriber"),
        "rabbitmq",
        url,
        topic,
        queue,
    )
}

async fn wait_processes(addrs: &[&str], n: usize) {
    micro_tests::wait_processes(addrs, n, Duration::from_secs(20)).await;
}

#[tokio::test]
#[cfg_attr(
    not(micro_test_rabbitmq),
    ignore = "needs RabbitMQ: set MICRO_TEST_RABBITMQ=amqp://127.0.0.1:5672/%2f"
)]
async fn three_processes_in_a_group_handle_each_event_once() {
    let url = server();
    let topic = topic("proc-group");
    let workers: Vec<Process> = (0..3)
        .map(|_| subscriber_process(&url, &topic, Some("workers")))
        .collect();
    let auditor = subscriber_process(&url, &topic, Some("audit"));
    let client = Client::builder()
        .broker(Arc::new(RabbitBroker::new(&url)))
        .build();
    for i in 0..600u32 {
        client.publish(&topic, &i).await.unwrap();
    }
    let addrs: Vec<&str> = workers.iter().map(|w| w.addr.as_str()).collect();
    wait_processes(&addrs, 600).await;
    wait_processes(&[&auditor.addr], 600).await;
    let mut all = Vec::new();
    for a in &addrs {
        let got = numbers_seen_by(a).await;
        assert!(!got.is_empty(), "a worker received nothing");
        all.extend(got);
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (0..600).collect::<Vec<_>>(),
        "each event to exactly one worker"
    );
    let mut audited = numbers_seen_by(&auditor.addr).await;
    audited.sort_unstable();
    assert_eq!(audited, (0..600).collect::<Vec<_>>());
}

#[tokio::test]
#[cfg_attr(
    not(micro_test_rabbitmq),
    ignore = "needs RabbitMQ: set MICRO_TEST_RABBITMQ=amqp://127.0.0.1:5672/%2f"
)]
async fn a_handler_that_keeps_failing_is_retried_then_dead_lettered() {
    let url = server();
    let topic = topic("poison");
    let broker = RabbitBroker::new(&url);
    let tries = Arc::new(Mutex::new(0u32));
    let counted = tries.clone();
    let sub = broker
        .subscribe(
            &topic,
            handler(move |msg: Message| {
                let counted = counted.clone();
                async move {
                    let n: u32 = msg.decode()?;
                    if n == 13 {
                        *counted.lock().unwrap() += 1;
                        return Err(micro::Error::internal("13 never works"));
                    }
                    Ok(())
                }
            }),
            SubscribeOptions::queue("billing"),
        )
        .await
        .unwrap();
    // The dead letters, read the way an operator would.
    let dead_topic = topic.clone();
    let dead = RabbitBroker::new(&url);
    let buried: Seen = Arc::default();
    let log = buried.clone();
    let dead_sub = dead
        .with_exchange(micro::broker::DEAD_LETTER)
        .subscribe(
            &dead_topic,
            handler(move |msg: Message| {
                let log = log.clone();
                async move {
                    log.lock().unwrap().push(msg.decode()?);
                    Ok(())
                }
            }),
            SubscribeOptions::default(),
        )
        .await
        .unwrap();
    let client = Client::builder().broker(Arc::new(broker.clone())).build();
    client.publish(&topic, &13u32).await.unwrap();
    wait_for("the dead letter", Duration::from_secs(20), || {
        !buried.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(*buried.lock().unwrap(), [13]);
    let attempts = *tries.lock().unwrap();
    assert!(
        (2..=micro::broker::MAX_ATTEMPTS).contains(&attempts),
        "{attempts} attempts"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        *tries.lock().unwrap(),
        attempts,
        "no attempt after the last"
    );
    sub.unsubscribe().await.unwrap();
    dead_sub.unsubscribe().await.unwrap();
}
