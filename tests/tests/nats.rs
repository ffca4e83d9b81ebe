//! The NATS broker against a real nats-server at `MICRO_TEST_NATS`, beyond
//! the broker conformance suite (tests/conformance.rs): across processes,
//! and with a plain NATS client on the other end. Ignored, saying so in
//! the summary, when the variable is not set.
#![cfg(feature = "nats")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use micro::Client;
use micro::broker::{Broker, Message, NatsBroker, SubscribeOptions, handler};
use micro::client::CallOptions;
use micro::codec::ContentType;
use micro_tests::numbers_seen_by;
use micro_tests::process::Greeter as Process;

/// The server these tests use; they are ignored unless it is set.
fn server() -> String {
    std::env::var("MICRO_TEST_NATS")
        .ok()
        .filter(|url| !url.is_empty())
        .expect("set MICRO_TEST_NATS=nats://host:port to run the NATS tests")
}

/// A topic of its own for each test run.
fn topic(name: &str) -> String {
    format!("micro.test.{name}.{}", uuid_like())
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{}-{nanos}", std::process::id())
}

type Seen = Arc<Mutex<Vec<u32>>>;

async fn subscriber(url: &str, topic: &str, queue: Option<&str>) -> (NatsBroker, Seen) {
    let broker = NatsBroker::new(url);
    broker
        .connect()
        .await
        .expect("MICRO_TEST_NATS is set but the server cannot be reached");
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
        .unwrap();
    std::mem::forget(sub);
    (broker, seen)
}

async fn wait_total(seen: &[&Seen], n: usize) {
    let started = Instant::now();
    while seen.iter().map(|s| s.lock().unwrap().len()).sum::<usize>() < n {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "messages missing"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Nothing more arrives after the expected count.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

fn sorted(seen: &Seen) -> Vec<u32> {
    let mut v = seen.lock().unwrap().clone();
    v.sort_unstable();
    v
}

async fn publish(url: &str, topic: &str, n: u32) {
    let client = Client::builder()
        .broker(Arc::new(NatsBroker::new(url)))
        .build();
    for i in 0..n {
        client.publish(topic, &i).await.unwrap();
    }
    client.broker().disconnect().await.unwrap();
}

#[tokio::test]
#[cfg_attr(
    not(micro_test_nats),
    ignore = "needs a NATS server: set MICRO_TEST_NATS=nats://127.0.0.1:4222"
)]
async fn a_plain_nats_client_reads_and_writes_micro_messages() {
    let url = server();
    assert!(
        micro_tests::python_has("nats"),
        "MICRO_TEST_NATS is set but python3 cannot import nats (pip install nats-py)"
    );
    let to_python = topic("to-python");
    let from_python = topic("from-python");
    let (_broker, seen) = subscriber(&url, &from_python, None).await;
    let script = r#"
import asyncio, json, sys
import nats
async def main(url, to_python, from_python):
    nc = await nats.connect(url)
    got = asyncio.get_running_loop().create_future()
    async def on(msg):
        if not got.done():
            got.set_result(msg)
    await nc.subscribe(to_python, cb=on)
    await nc.flush()
    print("ready", flush=True)
    msg = await asyncio.wait_for(got, 10)
    print("payload", json.loads(msg.data)["n"])
    print("content-type", msg.headers.get("Content-Type"))
    print("x-user", msg.headers.get("x-user"))
    await nc.publish(from_python, b"7", headers={"Content-Type": "application/json"})
    await nc.publish(from_python, b"8")
    await nc.flush()
    await nc.close()
asyncio.run(main(*sys.argv[1:]))
"#;
    let mut child = tokio::process::Command::new("python3")
        .args(["-c", script, &url, &to_python, &from_python])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("ready"));

    #[derive(serde::Serialize)]
    struct Payload {
        n: u32,
    }
    let client = Client::builder()
        .broker(Arc::new(NatsBroker::new(&url)))
        .build();
    client
        .publish_with(
            &to_python,
            &Payload { n: 42 },
            CallOptions::new()
                .metadata("x-user", "py")
                .content_type(ContentType::Json),
        )
        .await
        .unwrap();
    client.broker().disconnect().await.unwrap();
    let mut out = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        out.push(line);
    }
    assert!(child.wait().await.unwrap().success());
    assert_eq!(
        out,
        ["payload 42", "content-type application/json", "x-user py"]
    );
    wait_total(&[&seen], 2).await;
    assert_eq!(sorted(&seen), [7, 8]);
}

fn subscriber_process(url: &str, topic: &str, queue: Option<&str>) -> Process {
    micro_tests::subscriber_process(env!("CARGO_BIN_EXE_subscriber"), "nats", url, topic, queue)
}

async fn wait_processes(addrs: &[&str], n: usize) {
    micro_tests::wait_processes(addrs, n, Duration::from_secs(15)).await;
}

#[tokio::test]
#[cfg_attr(
    not(micro_test_nats),
    ignore = "needs a NATS server: set MICRO_TEST_NATS=nats://127.0.0.1:4222"
)]
async fn broadcast_to_three_processes_over_nats() {
    let url = server();
    let topic = topic("proc-broadcast");
    let procs: Vec<Process> = (0..3)
        .map(|_| subscriber_process(&url, &topic, None))
        .collect();
    publish(&url, &topic, 1000).await;
    for p in &procs {
        wait_processes(&[&p.addr], 1000).await;
        assert_eq!(
            numbers_seen_by(&p.addr).await,
            (0..1000).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
#[cfg_attr(
    not(micro_test_nats),
    ignore = "needs a NATS server: set MICRO_TEST_NATS=nats://127.0.0.1:4222"
)]
async fn queue_groups_across_processes_over_nats() {
    let url = server();
    let topic = topic("proc-queue");
    let workers: Vec<Process> = (0..3)
        .map(|_| subscriber_process(&url, &topic, Some("workers")))
        .collect();
    let auditor = subscriber_process(&url, &topic, Some("audit"));
    publish(&url, &topic, 1000).await;
    let addrs: Vec<&str> = workers.iter().map(|w| w.addr.as_str()).collect();
    wait_processes(&addrs, 1000).await;
    wait_processes(&[&auditor.addr], 1000).await;
    let mut all = Vec::new();
    for a in &addrs {
        let got = numbers_seen_by(a).await;
        assert!(!got.is_empty(), "a worker received nothing");
        all.extend(got);
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (0..1000).collect::<Vec<_>>(),
        "each message to exactly one worker"
    );
    assert_eq!(
        numbers_seen_by(&auditor.addr).await,
        (0..1000).collect::<Vec<_>>()
    );
}
