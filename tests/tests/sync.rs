//! Locks and elections through services and processes: a leader task
//! shown in the registry, leaders across three processes handing over on
//! SIGKILL and SIGTERM on Redis, Postgres and NATS (their writes fenced in
//! the store), and a backend that is down or goes away.

use std::sync::Arc;
use std::time::{Duration, Instant};

use micro::registry::{MemoryRegistry, Registry};
use micro::sync::{Locker, MemoryLocks};

/// Two nodes of one service with a leader task: one leads, its node shows
/// `leader.<election>` in the registry, and when it stops the other takes
/// over at once and shows it.
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_task_runs_on_one_node_and_moves_on_a_stop() {
    let backends = micro::Backends::memory().with_sync(Arc::new(MemoryLocks::new()));
    let registry: Arc<dyn Registry> = Arc::new(MemoryRegistry::new());
    let backends = backends.with_registry(registry.clone());
    let runs = Arc::new(std::sync::Mutex::new(Vec::<(usize, u64)>::new()));
    let node = |i: usize| {
        let runs = runs.clone();
        micro::Service::new("scheduler")
            .address("127.0.0.1:0")
            .backends(&backends)
            .leader_task("ticks", move |leading| {
                let runs = runs.clone();
                async move {
                    runs.lock().unwrap().push((i, leading.fence()));
                    leading.lost().await;
                }
            })
            .start()
    };
    let first = node(0).await.unwrap();
    let second = node(1).await.unwrap();
    let leaders = async || {
        let records = registry.get_service("scheduler").await.unwrap();
        records
            .iter()
            .flat_map(|r| &r.nodes)
            .filter_map(|n| {
                n.metadata
                    .get(&micro::service::leader_key("ticks"))
                    .cloned()
            })
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while leaders().await.is_empty() {
        assert!(Instant::now() < deadline, "no leader in the registry");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(leaders().await.len(), 1, "one leader");
    let started = runs.lock().unwrap().clone();
    assert_eq!(started.len(), 1, "{started:?}");
    let (leader, fence) = started[0];
    assert_eq!(leaders().await, [fence.to_string()]);

    let (stopping, staying) = if leader == 0 {
        (first, second)
    } else {
        (second, first)
    };
    let stopped_at = Instant::now();
    stopping.stop().await.unwrap();
    loop {
        let now = runs.lock().unwrap().clone();
        if now.len() == 2 {
            assert_ne!(now[1].0, leader);
            assert!(now[1].1 > fence, "{now:?}");
            break;
        }
        assert!(stopped_at.elapsed() < Duration::from_secs(2), "no takeover");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while leaders().await.len() != 1 {
        assert!(Instant::now() < deadline, "the new leader is not shown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    staying.stop().await.unwrap();
}

/// A lock backend that cannot be reached: 503 naming it.
async fn down_gives_503(locks: Arc<dyn micro::sync::Locks>, address: &str) {
    let locker = Locker::new(locks);
    let err = locker
        .try_lock("down", Duration::from_secs(1))
        .await
        .expect_err("down");
    assert_eq!(err.code(), 503, "{err}");
    assert!(err.detail().contains(address), "{err}");
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_redis_that_is_down_gives_503() {
    let locks = micro::sync::RedisLocks::new("redis://127.0.0.1:1").unwrap();
    down_gives_503(Arc::new(locks), "127.0.0.1:1").await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_postgres_that_is_down_gives_503() {
    let locks = micro::sync::PostgresLocks::new("postgres://postgres@127.0.0.1:1/test").unwrap();
    down_gives_503(Arc::new(locks), "127.0.0.1:1").await;
}

#[cfg(feature = "nats")]
#[tokio::test]
async fn a_nats_that_is_down_gives_503() {
    let locks = micro::sync::NatsLocks::new("nats://127.0.0.1:1");
    down_gives_503(Arc::new(locks), "127.0.0.1:1").await;
}

/// Takes a lock on `locks` (whose server `server` is, starting), holds it
/// past two TTLs, kills the server, and checks that the lock reports itself
/// lost within about its time to live and that locking then fails with 503.
async fn lost_when_server_goes_away(
    locks: Arc<dyn micro::sync::Locks>,
    mut server: std::process::Child,
) {
    let locker = Locker::new(locks);
    let ttl = Duration::from_millis(600);
    let deadline = Instant::now() + Duration::from_secs(10);
    let lock = loop {
        match locker.try_lock("goes-away", ttl).await {
            Ok(lock) => break lock.expect("free"),
            Err(e) => {
                assert!(Instant::now() < deadline, "the server did not start: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    tokio::time::sleep(ttl * 2).await;
    assert!(!lock.is_lost(), "renewed while the server is up");
    server.kill().unwrap();
    let _ = server.wait();
    let killed = Instant::now();
    tokio::time::timeout(ttl * 4, lock.lost())
        .await
        .expect("lost() fires");
    assert!(
        killed.elapsed() <= ttl + Duration::from_millis(500),
        "{:?}",
        killed.elapsed()
    );
    let err = tokio::time::timeout(Duration::from_secs(30), locker.try_lock("goes-away", ttl))
        .await
        .expect("an answer")
        .expect_err("down");
    assert_eq!(err.code(), 503, "{err}");
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread")]
async fn a_held_lock_is_lost_when_redis_goes_away() {
    let port = micro_tests::free_port();
    let server = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server runs (apt install redis-server)");
    let url = format!("redis://127.0.0.1:{port}");
    let locks = micro::sync::RedisLocks::new(&url).unwrap();
    lost_when_server_goes_away(Arc::new(locks), server).await;
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread")]
async fn a_held_lock_is_lost_when_nats_goes_away() {
    let dir = std::env::temp_dir().join(format!("micro-sync-nats-{}", std::process::id()));
    let (server, url) = micro_tests::private_nats_server(&dir).await;
    let locks = micro::sync::NatsLocks::new(url);
    lost_when_server_goes_away(Arc::new(locks), server).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Candidates of one election, in processes of their own, and what they
/// printed.
struct Candidates {
    nodes: Vec<micro_tests::process::Greeter>,
    /// Every line each node printed.
    said: Vec<Vec<String>>,
    /// Every lead seen, in order: the node and its token.
    leads: Vec<(usize, u64)>,
}

impl Candidates {
    fn spawn(n: usize, env: &[(&str, &str)]) -> Self {
        let nodes = (0..n)
            .map(|_| micro_tests::process::Greeter::spawn(env!("CARGO_BIN_EXE_leader"), env))
            .collect();
        Self {
            nodes,
            said: vec![Vec::new(); n],
            leads: Vec::new(),
        }
    }

    /// Reads what the nodes printed since; how many new leads. Fails on a
    /// refused write: a former leader wrote after a later one.
    fn read(&mut self) -> usize {
        let before = self.leads.len();
        for (i, node) in self.nodes.iter().enumerate() {
            for line in node.output() {
                assert!(
                    !line.starts_with("fenced") && !line.starts_with("write failed"),
                    "node {i}: {line}; before: {:?}",
                    self.said
                );
                if let Some(fence) = line.strip_prefix("leading ") {
                    self.leads.push((i, fence.parse().unwrap()));
                }
                self.said[i].push(line);
            }
        }
        self.leads.len() - before
    }

    /// Waits for the next lead.
    fn next_lead(&mut self, within: Duration) -> (usize, u64) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.read() > 0 {
                return *self.leads.last().unwrap();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("no new leader within {within:?}: {:?}", self.said);
    }

    /// Waits `long`, and checks that nobody else took the lead meanwhile.
    fn quiet(&mut self, long: Duration) {
        std::thread::sleep(long);
        assert_eq!(self.read(), 0, "{:?}", self.leads);
    }
}

/// Three processes campaign on `kind` at `url`, with their store there
/// too: one leads; SIGKILL it and another leads within the time to live
/// and a renewal; SIGTERM that one and the third leads at once; each
/// lead's token above the last. Every leader writes its token to the
/// store with a fence check all along, and none is ever refused: no two
/// led at once. Returns the election and the last lead's token, which the
/// store holds.
fn hand_over(kind: &str, url: &str) -> (String, u64) {
    let election = format!("leaders-{kind}-{}", std::process::id());
    let mut c = Candidates::spawn(
        3,
        &[
            ("MICRO_REGISTRY", "memory"),
            ("MICRO_BROKER", "memory"),
            ("MICRO_SYNC", kind),
            ("MICRO_SYNC_ADDRESS", url),
            ("MICRO_STORE", kind),
            ("MICRO_STORE_ADDRESS", url),
            ("ELECTION", election.as_str()),
        ],
    );
    let (first, fence) = c.next_lead(Duration::from_secs(10));
    // Held past several renewals, by one node only, writing all along.
    c.quiet(Duration::from_millis(1500));

    // SIGKILL: no resign; the lease runs out (1 s) and another takes it.
    c.nodes[first].kill();
    let killed = Instant::now();
    let (second, fence2) = c.next_lead(Duration::from_secs(5));
    let took = killed.elapsed();
    assert!(
        took < Duration::from_millis(1800),
        "took over after {took:?}"
    );
    assert_ne!(second, first);
    assert!(fence2 > fence, "{:?}", c.leads);
    c.quiet(Duration::from_millis(300));

    // SIGTERM: a graceful stop resigns, and the third leads at once.
    c.nodes[second].signal(libc::SIGTERM);
    let termed = Instant::now();
    let (third, fence3) = c.next_lead(Duration::from_secs(5));
    let took = termed.elapsed();
    assert!(
        took < Duration::from_millis(700),
        "took over after {took:?}"
    );
    assert!(third != first && third != second, "{:?}", c.leads);
    assert!(fence3 > fence2, "{:?}", c.leads);
    assert_eq!(c.nodes[second].wait(Duration::from_secs(5)), 0);
    // The third writes for a while; nobody else leads or is refused.
    c.quiet(Duration::from_millis(500));
    (election, fence3)
}

/// The store holds the last leader's token, written with its fence.
async fn last_write_is(kind: &str, url: &str, election: &str, fence: u64) {
    let backends = micro::Backends::from_vars(|name| match name {
        "MICRO_REGISTRY" | "MICRO_BROKER" => Some("memory".to_owned()),
        "MICRO_STORE" => Some(kind.to_owned()),
        "MICRO_STORE_ADDRESS" => Some(url.to_owned()),
        _ => None,
    });
    let log = micro::store::Scoped::new(backends.store().clone(), "leaders").unwrap();
    let record = log.read(election).await.unwrap();
    assert_eq!(record.decode::<u64>().unwrap(), fence);
    assert_eq!(
        record.metadata.get(micro::store::FENCE_KEY),
        Some(&fence.to_string())
    );
    assert!(log.delete(election).await.unwrap());
}

#[cfg(feature = "redis")]
#[test]
#[cfg_attr(
    not(micro_test_redis),
    ignore = "needs a Redis server: set MICRO_TEST_REDIS=redis://127.0.0.1:6379"
)]
fn leaders_on_redis_hand_over_on_kill_and_term() {
    let url = std::env::var("MICRO_TEST_REDIS").expect("MICRO_TEST_REDIS names the server");
    let (election, fence) = hand_over("redis", &url);
    runtime().block_on(async {
        last_write_is("redis", &url, &election, fence).await;
        // The election's keys, so that the server does not grow run by run.
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let pattern = format!("micro:sync:{{election:{election}}}*");
        assert!(micro_tests::delete_redis_keys(&mut conn, &pattern).await > 0);
    });
}

#[cfg(feature = "postgres")]
#[test]
#[cfg_attr(
    not(micro_test_postgres),
    ignore = "needs a Postgres server: set MICRO_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test"
)]
fn leaders_on_postgres_hand_over_on_kill_and_term() {
    let url = std::env::var("MICRO_TEST_POSTGRES").expect("MICRO_TEST_POSTGRES names the server");
    let (election, fence) = hand_over("postgres", &url);
    runtime().block_on(async {
        last_write_is("postgres", &url, &election, fence).await;
        let deleted = micro_tests::postgres_execute(
            &url,
            "DELETE FROM micro_locks WHERE name = $1",
            &format!("election:{election}"),
        )
        .await;
        assert_eq!(deleted, 1);
    });
}

#[cfg(feature = "nats")]
#[test]
#[cfg_attr(
    not(micro_test_nats_kv),
    ignore = "needs a NATS server with JetStream KV (2.10+): set MICRO_TEST_NATS_KV=nats://127.0.0.1:4223"
)]
fn leaders_on_nats_hand_over_on_kill_and_term() {
    let url = std::env::var("MICRO_TEST_NATS_KV").expect("MICRO_TEST_NATS_KV names the server");
    let (election, fence) = hand_over("nats", &url);
    runtime().block_on(async {
        last_write_is("nats", &url, &election, fence).await;
        micro_tests::purge_nats_locks(&url, &format!("election:{election}")).await;
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
