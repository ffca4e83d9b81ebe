//! Pub/sub between real processes over the HTTP broker, found through real
//! mDNS, in a network namespace the test makes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use micro::registry::{MdnsRegistry, Registry};
use micro::{Client, broker::HttpBroker};
use micro_tests::netns::isolated;
use micro_tests::numbers_seen_by;
use micro_tests::process::Greeter as Process;

const SUBSCRIBER: &str = env!("CARGO_BIN_EXE_subscriber");

fn subscriber(topic: &str, queue: Option<&str>) -> Process {
    let mut env = vec![
        ("MICRO_REGISTRY", "mdns"),
        ("MICRO_MDNS_INTERFACES", "lo"),
        ("MICRO_BROKER", "http"),
        ("SUB_TOPIC", topic),
    ];
    if let Some(q) = queue {
        env.push(("SUB_QUEUE", q));
    }
    Process::spawn(SUBSCRIBER, &env)
}

/// Waits until `n` subscriber nodes are registered.
async fn wait_for(registry: &dyn Registry, n: usize) {
    let started = Instant::now();
    loop {
        let count = registry
            .get_service("subscriber")
            .await
            .map(|r| r.iter().map(|s| s.nodes.len()).sum::<usize>())
            .unwrap_or(0);
        if count == n {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{count} of {n} subscribers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn publish(client: &Client, topic: &str, n: u32) -> Duration {
    let started = Instant::now();
    for i in 0..n {
        client.publish(topic, &i).await.unwrap();
    }
    started.elapsed()
}

fn clients() -> (Arc<MdnsRegistry>, Client) {
    let registry = Arc::new(MdnsRegistry::builder().interfaces(["lo"]).build());
    let client = Client::builder()
        .registry(registry.clone())
        .broker(Arc::new(HttpBroker::new(registry.clone())))
        .build();
    (registry, client)
}

#[test]
#[cfg_attr(
    not(micro_test_root),
    ignore = "needs root: it makes network namespaces for mDNS"
)]
fn broadcast_to_three_processes_exactly_once() {
    isolated(|| async {
        let subs: Vec<Process> = (0..3).map(|_| subscriber("fanout", None)).collect();
        let (registry, client) = clients();
        wait_for(&*registry, 3).await;
        let took = publish(&client, "fanout", 1000).await;
        println!("1000 broadcasts to 3 processes in {took:?}");
        for s in &subs {
            assert_eq!(
                numbers_seen_by(&s.addr).await,
                (0..1000).collect::<Vec<_>>()
            );
        }
    });
}

#[test]
#[cfg_attr(
    not(micro_test_root),
    ignore = "needs root: it makes network namespaces for mDNS"
)]
fn queue_groups_across_processes() {
    isolated(|| async {
        let workers: Vec<Process> = (0..3)
            .map(|_| subscriber("jobs", Some("workers")))
            .collect();
        let auditor = subscriber("jobs", Some("audit"));
        let (registry, client) = clients();
        wait_for(&*registry, 4).await;
        publish(&client, "jobs", 1000).await;
        let mut all = Vec::new();
        for w in &workers {
            let got = numbers_seen_by(&w.addr).await;
            assert!(!got.is_empty(), "a worker received nothing");
            all.extend(got);
        }
        all.sort_unstable();
        assert_eq!(
            all,
            (0..1000).collect::<Vec<_>>(),
            "each job to exactly one worker"
        );
        assert_eq!(
            numbers_seen_by(&auditor.addr).await,
            (0..1000).collect::<Vec<_>>()
        );
    });
}

/// A publisher that publishes in its first millisecond, with a fresh
/// client, does not lose its events: its first lookup waits for mDNS's
/// first answers instead of answering from an empty cache, and each
/// publish says how many subscribers took it.
#[test]
#[cfg_attr(
    not(micro_test_root),
    ignore = "needs root: it makes network namespaces for mDNS"
)]
fn a_fresh_publisher_loses_nothing() {
    isolated(|| async {
        let sub = subscriber("fresh", None);
        let (registry, _) = clients();
        wait_for(&*registry, 1).await;
        let mut delivered = 0;
        for run in 0..10u32 {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_publisher"))
                .env("MICRO_REGISTRY", "mdns")
                .env("MICRO_MDNS_INTERFACES", "lo")
                .env("MICRO_BROKER", "http")
                .env("PUB_TOPIC", "fresh")
                .env("PUB_FIRST", (run * 5).to_string())
                .output()
                .expect("publisher runs");
            assert!(out.status.success());
            let lines = String::from_utf8_lossy(&out.stdout).into_owned();
            delivered += lines.lines().filter(|l| *l == "delivered 1").count();
            println!("run {run}: {}", lines.replace('\n', "; "));
        }
        let seen = numbers_seen_by(&sub.addr).await;
        println!(
            "fresh publishers: {} of 50 events delivered, {delivered} reported delivered",
            seen.len()
        );
        assert_eq!(seen, (0..50).collect::<Vec<u32>>());
        assert_eq!(delivered, 50, "every publish reported its one subscriber");
    });
}
