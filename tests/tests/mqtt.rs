//! The MQTT broker against the real Mosquitto at `MICRO_TEST_MQTT`, beyond
//! the broker conformance suite: a plain MQTT 5 client (Python's
//! paho-mqtt) on the other end, a shared subscription across processes,
//! and a broker of the test's own restarted under steady publishing.
//! Ignored, saying so in the summary, when the variable is not set.
#![cfg(feature = "mqtt")]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use micro::Client;
use micro::broker::{Broker, Message, MqttBroker, SubscribeOptions, handler};
use micro::client::CallOptions;
use micro_tests::numbers_seen_by;
use micro_tests::process::Greeter as Process;
use micro_tests::{unique_topic as topic, wait_until};

/// The server these tests use; they are ignored unless it is set.
fn server() -> String {
    std::env::var("MICRO_TEST_MQTT")
        .ok()
        .filter(|url| !url.is_empty())
        .expect("set MICRO_TEST_MQTT=mqtt://host:1883 to run the MQTT tests")
}

type Seen = Arc<Mutex<Vec<u32>>>;

async fn numbers(broker: &MqttBroker, topic: &str, queue: Option<&str>) -> Seen {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let options = queue.map_or_else(SubscribeOptions::default, SubscribeOptions::queue);
    let sub = broker
        .subscribe(
            topic,
            handler(move |msg: Message| {
                let log = log.clone();
                async move {
                    log.lock().unwrap().push(msg.decode()?);
                    Ok(())
                }
            }),
            options,
        )
        .await
        .expect("the MQTT broker takes the subscription");
    std::mem::forget(sub);
    seen
}

#[tokio::test]
#[cfg_attr(
    not(micro_test_mqtt),
    ignore = "needs an MQTT 5 broker: set MICRO_TEST_MQTT=mqtt://127.0.0.1:1883"
)]
async fn a_paho_client_reads_and_writes_micro_messages() {
    let url = server();
    assert!(
        micro_tests::python_has("paho.mqtt.client"),
        "MICRO_TEST_MQTT is set but python3 cannot import paho.mqtt (pip install paho-mqtt)"
    );
    let to_python = topic("to-python");
    let from_python = topic("from-python");
    let broker = MqttBroker::new(&url);
    // (payload, x-user) of each message paho sent.
    type Got = Vec<(u32, Option<String>)>;
    let seen: Arc<Mutex<Got>> = Arc::default();
    let log = seen.clone();
    let _sub = broker
        .subscribe(
            &from_python,
            handler(move |msg: Message| {
                let log = log.clone();
                async move {
                    let n: u32 = msg.decode()?;
                    log.lock()
                        .unwrap()
                        .push((n, msg.metadata.get("x-user").map(str::to_owned)));
                    Ok(())
                }
            }),
            SubscribeOptions::default(),
        )
        .await
        .unwrap();
    // paho subscribes to micro's topic with its dots as slashes, reads
    // micro's message, then publishes two of its own.
    let script = r#"
import json, queue, sys
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
host, port, to_python, from_python = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
got = queue.Queue()
subscribed = queue.Queue()
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
c.on_message = lambda client, userdata, msg: got.put(msg)
c.on_subscribe = lambda client, userdata, mid, codes, props: subscribed.put(mid)
c.connect(host, port)
c.loop_start()
c.subscribe(to_python.replace(".", "/"), qos=1)
subscribed.get(timeout=10)
print("ready", flush=True)
msg = got.get(timeout=10)
props = dict(msg.properties.UserProperty)
print("payload", json.loads(msg.payload)["n"])
print("content-type", msg.properties.ContentType)
print("x-user", props.get("x-user"))
print("id", "yes" if props.get("micro-id") else "no")
p = Properties(PacketTypes.PUBLISH)
p.ContentType = "application/json"
p.UserProperty = [("x-user", "py")]
c.publish(from_python.replace(".", "/"), b"7", qos=1, properties=p).wait_for_publish(10)
c.publish(from_python.replace(".", "/"), b"8", qos=1).wait_for_publish(10)
c.loop_stop()
c.disconnect()
"#;
    let address = url.trim_start_matches("mqtt://").trim_end_matches('/');
    let (host, port) = address.rsplit_once(':').unwrap_or((address, "1883"));
    #[derive(serde::Serialize)]
    struct Payload {
        n: u32,
    }
    let client = Client::builder()
        .broker(Arc::new(MqttBroker::new(&url)))
        .build();
    let out = micro_tests::python_peer(script, &[host, port, &to_python, &from_python], async {
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
    wait_until("both of paho's messages", Duration::from_secs(10), || {
        seen.lock().unwrap().len() >= 2
    })
    .await;
    let mut got = seen.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, [(7, Some("py".to_owned())), (8, None)]);
}

#[tokio::test]
#[cfg_attr(
    not(micro_test_mqtt),
    ignore = "needs an MQTT 5 broker: set MICRO_TEST_MQTT=mqtt://127.0.0.1:1883"
)]
async fn three_processes_in_a_shared_subscription_handle_each_event_once() {
    let url = server();
    let topic = topic("proc-group");
    let path = env!("CARGO_BIN_EXE_subscriber");
    let spawn = |queue| micro_tests::subscriber_process(path, "mqtt", &url, &topic, Some(queue));
    let workers: Vec<Process> = (0..3).map(|_| spawn("workers")).collect();
    let auditor = spawn("audit");
    let client = Client::builder()
        .broker(Arc::new(MqttBroker::new(&url)))
        .build();
    for i in 0..600u32 {
        client.publish(&topic, &i).await.unwrap();
    }
    let addrs: Vec<&str> = workers.iter().map(|w| w.addr.as_str()).collect();
    let limit = Duration::from_secs(20);
    micro_tests::wait_processes(&addrs, 600, limit).await;
    micro_tests::wait_processes(&[&auditor.addr], 600, limit).await;
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

/// A Mosquitto of the test's own on a free port, persisting to `dir` if
/// `persist`.
fn mosquitto(dir: &std::path::Path, port: u16, persist: bool) -> std::process::Child {
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence {persist}\npersistence_location {}/\n",
            dir.display()
        ),
    )
    .unwrap();
    std::process::Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mosquitto runs (apt-get install mosquitto)")
}

async fn listening(port: u16) {
    wait_until("mosquitto listening", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
}

#[tokio::test]
#[cfg_attr(
    not(micro_test_mqtt),
    ignore = "needs mosquitto (and MICRO_TEST_MQTT): it starts a broker of its own"
)]
async fn a_broker_restart_under_steady_publishing() {
    // Mosquitto keeping its sessions across the restart (persistence), and
    // one that loses them, where micro must subscribe again by itself.
    for persist in [true, false] {
        restart(persist).await;
    }
}

async fn restart(persist: bool) {
    let dir =
        std::env::temp_dir().join(format!("micro-mosquitto-{}-{persist}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = micro_tests::free_port();
    let mut first = mosquitto(&dir, port, persist);
    listening(port).await;
    let url = format!("mqtt://127.0.0.1:{port}");
    let topic = topic("restart");
    let subscriber = MqttBroker::new(&url);
    let seen = numbers(&subscriber, &topic, Some("keepers")).await;
    let client = Client::builder()
        .broker(Arc::new(MqttBroker::new(&url)))
        .build();
    let (acked, failed, publishing) = micro_tests::publish_steadily(client, topic.clone(), 600);
    wait_until("publishing to start", Duration::from_secs(10), || {
        acked.lock().unwrap().len() >= 100
    })
    .await;
    // A graceful restart: SIGTERM, so a persisting Mosquitto saves its
    // sessions.
    // SAFETY: signalling a child process of this test.
    unsafe { libc::kill(first.id() as i32, libc::SIGTERM) };
    first.wait().unwrap();
    let mut second = mosquitto(&dir, port, persist);
    listening(port).await;
    publishing.await.unwrap();
    let expected = acked.lock().unwrap().clone();
    // Publishing and delivery go on after the restart, the subscription
    // restored without the test doing anything.
    let last = *expected.iter().next_back().unwrap();
    wait_until(
        "the last acknowledged message",
        Duration::from_secs(30),
        || seen.lock().unwrap().contains(&last),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got: BTreeSet<u32> = seen.lock().unwrap().iter().copied().collect();
    let lost = expected.difference(&got).count();
    eprintln!(
        "mqtt restart (persistence {persist}): {} acknowledged, {} refused with 503 during the restart, {lost} acknowledged but not delivered",
        expected.len(),
        failed.load(std::sync::atomic::Ordering::SeqCst)
    );
    if persist {
        assert_eq!(lost, 0, "a broker that keeps its sessions loses nothing");
    }
    let _ = second.kill();
    let _ = second.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
