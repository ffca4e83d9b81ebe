//! RabbitMQ restarted under steady publishing: no publish that returned
//! `Ok` is lost, and subscribers come back by themselves. A test binary of
//! its own, so that the restart drops no other test's connection.
#![cfg(feature = "rabbitmq")]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use micro::Client;
use micro::broker::{Broker, Message, RabbitBroker, SubscribeOptions, handler};
use micro_tests::{unique_topic, wait_until};

/// Restarts RabbitMQ's application (every client connection drops; durable
/// queues and persistent messages stay).
fn restart_rabbitmq() {
    for step in ["stop_app", "start_app"] {
        let status = std::process::Command::new("rabbitmqctl")
            .arg(step)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("rabbitmqctl runs");
        assert!(status.success(), "rabbitmqctl {step}");
    }
}

#[tokio::test]
#[cfg_attr(
    not(micro_test_rabbitmq),
    ignore = "needs RabbitMQ: set MICRO_TEST_RABBITMQ=amqp://127.0.0.1:5672/%2f"
)]
async fn a_restart_under_steady_publishing_loses_nothing_acknowledged() {
    let url = std::env::var("MICRO_TEST_RABBITMQ").expect("MICRO_TEST_RABBITMQ names the server");
    let topic = unique_topic("restart");
    let broker = RabbitBroker::new(&url);
    let seen: Arc<Mutex<Vec<u32>>> = Arc::default();
    let log = seen.clone();
    let _subscribed = broker
        .subscribe(
            &topic,
            handler(move |msg: Message| {
                let log = log.clone();
                async move {
                    log.lock().unwrap().push(msg.decode()?);
                    Ok(())
                }
            }),
            SubscribeOptions::queue("keepers"),
        )
        .await
        .expect("MICRO_TEST_RABBITMQ is set but RabbitMQ cannot be reached");
    let publisher = RabbitBroker::new(&url);
    let client = Client::builder().broker(Arc::new(publisher)).build();
    let (acked, failed, publishing) = micro_tests::publish_steadily(client, topic.clone(), 600);
    wait_until("publishing to start", Duration::from_secs(10), || {
        acked.lock().unwrap().len() >= 100
    })
    .await;
    tokio::task::spawn_blocking(restart_rabbitmq).await.unwrap();
    publishing.await.unwrap();
    // Every publish that returned Ok reaches the group, the subscriber
    // having come back by itself.
    let expected = acked.lock().unwrap().clone();
    wait_until(
        "every acknowledged message",
        Duration::from_secs(30),
        || {
            let got: BTreeSet<u32> = seen.lock().unwrap().iter().copied().collect();
            expected.is_subset(&got)
        },
    )
    .await;
    eprintln!(
        "{} acknowledged, {} refused with 503 while RabbitMQ restarted",
        expected.len(),
        failed.load(std::sync::atomic::Ordering::SeqCst)
    );
}
