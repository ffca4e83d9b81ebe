//! Locks and elections through services and processes: a leader task
//! shown in the registry, leaders across three processes handing over on
//! SIGKILL and SIGTERM, and a Redis that is down or goes away.

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
#[cfg(feature = "redis")]
#[tokio::test]
async fn a_redis_that_is_down_gives_503() {
    let locks = micro::sync::RedisLocks::new("redis://127.0.0.1:1").unwrap();
    let locker = Locker::new(Arc::new(locks));
    let err = locker
        .try_lock("down", Duration::from_secs(1))
        .await
        .expect_err("down");
    assert_eq!(err.code(), 503, "{err}");
    assert!(err.detail().contains("127.0.0.1:1"), "{err}");
}

/// A held lock whose Redis goes away reports itself lost within about its
/// time to live.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread")]
async fn a_held_lock_is_lost_when_redis_goes_away() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server runs (apt install redis-server)");
    let url = format!("redis://127.0.0.1:{port}");
    let locker = Locker::new(Arc::new(micro::sync::RedisLocks::new(&url).unwrap()));
    let ttl = Duration::from_millis(600);
    let deadline = Instant::now() + Duration::from_secs(10);
    let lock = loop {
        match locker.try_lock("goes-away", ttl).await {
            Ok(lock) => break lock.expect("free"),
            Err(e) => {
                assert!(Instant::now() < deadline, "redis-server did not start: {e}");
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
    let err = locker.try_lock("goes-away", ttl).await.expect_err("down");
    assert_eq!(err.code(), 503, "{err}");
}

/// Three processes campaign: one leads; SIGKILL it and another leads within
/// the time to live and a renewal; SIGTERM that one and the third leads at
/// once; each lead's token above the last.
#[cfg(feature = "redis")]
#[test]
#[cfg_attr(
    not(micro_test_redis),
    ignore = "needs a Redis server: set MICRO_TEST_REDIS=redis://127.0.0.1:6379"
)]
fn leaders_across_processes_hand_over_on_kill_and_term() {
    use micro_tests::process::Greeter;

    let url = std::env::var("MICRO_TEST_REDIS").expect("MICRO_TEST_REDIS names the server");
    let election = format!("leaders-{}", std::process::id());
    let env = [
        ("MICRO_REGISTRY", "memory"),
        ("MICRO_BROKER", "memory"),
        ("MICRO_SYNC", "redis"),
        ("MICRO_SYNC_ADDRESS", url.as_str()),
        ("ELECTION", election.as_str()),
    ];
    let mut nodes: Vec<Greeter> = (0..3)
        .map(|_| Greeter::spawn(env!("CARGO_BIN_EXE_leader"), &env))
        .collect();
    // Every `leading <fence>` line seen, by node, in order.
    let mut leads: Vec<(usize, u64)> = Vec::new();
    let next_lead = |nodes: &[Greeter], leads: &mut Vec<(usize, u64)>, within: Duration| {
        let deadline = Instant::now() + within;
        let seen = leads.len();
        while Instant::now() < deadline {
            for (i, node) in nodes.iter().enumerate() {
                for line in node.output() {
                    if let Some(fence) = line.strip_prefix("leading ") {
                        leads.push((i, fence.parse().unwrap()));
                    }
                }
            }
            if leads.len() > seen {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("no new leader within {within:?}: {leads:?}");
    };

    next_lead(&nodes, &mut leads, Duration::from_secs(10));
    // Held past several renewals, by one node only.
    std::thread::sleep(Duration::from_millis(1500));
    let quiet = nodes.iter().flat_map(Greeter::output).collect::<Vec<_>>();
    assert!(!quiet.iter().any(|l| l.starts_with("leading")), "{quiet:?}");
    assert_eq!(leads.len(), 1, "{leads:?}");

    // SIGKILL: no resign; the lease runs out (1 s) and another takes it.
    let (first, fence) = leads[0];
    nodes[first].kill();
    let killed = Instant::now();
    next_lead(&nodes, &mut leads, Duration::from_secs(5));
    let took = killed.elapsed();
    assert!(
        took < Duration::from_millis(1800),
        "took over after {took:?}"
    );
    let (second, fence2) = leads[1];
    assert_ne!(second, first);
    assert!(fence2 > fence, "{leads:?}");

    // SIGTERM: a graceful stop resigns, and the third leads at once.
    nodes[second].signal(libc::SIGTERM);
    let termed = Instant::now();
    next_lead(&nodes, &mut leads, Duration::from_secs(5));
    let took = termed.elapsed();
    assert!(
        took < Duration::from_millis(700),
        "took over after {took:?}"
    );
    let (third, fence3) = leads[2];
    assert!(third != first && third != second, "{leads:?}");
    assert!(fence3 > fence2, "{leads:?}");
    assert_eq!(nodes[second].wait(Duration::from_secs(5)), 0);
    assert_eq!(leads.len(), 3, "{leads:?}");
    drop(nodes);

    // The election's keys, so that the server does not grow run by run.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let pattern = format!("micro:sync:{{election:{election}}}*");
        assert!(micro_tests::delete_redis_keys(&mut conn, &pattern).await > 0);
    });
}
