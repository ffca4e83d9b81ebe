//! Run with: cargo bench -p micro-examples --features nats,etcd --bench discovery
//!
//! How fast each registry makes a new service callable by name, and how
//! fast a killed one leaves: mDNS, NATS KV and etcd, with the service in a
//! process of its own (this benchmark started again as the helloworld
//! service), registering with a 3 s TTL renewed every second.
//!
//! Per round, a client that is already polling the name every millisecond (as the raw rows poll) times:
//! - `start → serving`: from spawning the process to its printing that it
//!   listens (its start, which returns once it is registered);
//! - `serving → first call`: from there to the client's first successful
//!   call by name (the lookup, the call, and the poll's wait);
//! - `SIGKILL → gone`: from killing it (no deregistration) to a watcher on
//!   the client's side seeing it leave, which the TTL bounds.
//!
//! And, as the raw libraries' figure for the same work (a registration that
//! another party finds), `raw register → found`: mdns-sd registering on
//! one daemon until another resolves it, async-nats putting a key until a
//! second connection reads it, and a plain hyper client putting a key into
//! etcd until a range finds it.
//!
//! mDNS runs in a network namespace of its own (it needs root; without it,
//! its rows are skipped, saying so), so no multicast leaves the machine.
//! NATS (2.11+, for per-key TTLs) is at `MICRO_TEST_NATS_KV` (default
//! `nats://127.0.0.1:4222`) and etcd at `MICRO_TEST_ETCD` (default
//! `http://127.0.0.1:2379`); each is skipped, saying so, when it cannot be
//! reached. `BENCH_ROUNDS` sets the rounds (default 5); medians are shown,
//! with the worst round.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use micro::registry::EventKind;
use micro_examples::helloworld::{Helloworld, HelloworldClient, Request};

/// Set in the child: serve helloworld instead of measuring.
const CHILD: &str = "DISCOVERY_BENCH_CHILD";

/// The service's registration TTL.
const TTL: Duration = Duration::from_secs(3);

fn main() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    println!(
        "discovery: {rounds} rounds each, TTL {TTL:?} renewed every {:?}; median (worst)",
        TTL / 3
    );

    let nats =
        std::env::var("MICRO_TEST_NATS_KV").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let etcd = std::env::var("MICRO_TEST_ETCD").unwrap_or_else(|_| "http://127.0.0.1:2379".into());
    let rt = runtime();
    for (kind, url) in [("nats", nats), ("etcd", etcd)] {
        if !reachable(&url) {
            println!("{kind}: skipped, no server at {url}");
            continue;
        }
        rt.block_on(measure(kind, Some(url), rounds));
    }

    // mDNS in a namespace of its own: this thread, its runtime and the
    // processes they start.
    std::thread::spawn(move || {
        if !isolate() {
            println!("mdns: skipped, making a network namespace needs root");
            return;
        }
        runtime().block_on(measure("mdns", None, rounds));
    })
    .join()
    .unwrap();
}

/// The child: the helloworld service on the registry its environment
/// names, until it is killed.
fn child() {
    runtime().block_on(async {
        let running = micro::Service::new("helloworld")
            .address("127.0.0.1:0")
            .register_ttl(TTL)
            .register_interval(TTL / 3)
            .handle(Helloworld)
            .start()
            .await
            .expect("the service starts");
        println!("listening on {}", running.local_addr());
        micro::service::shutdown_signal().await;
        running.stop().await.unwrap();
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Moves this thread into a network namespace of its own with `lo` up.
fn isolate() -> bool {
    // SAFETY: unshare(2) changes only this thread's namespaces.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return false;
    }
    Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether something listens at the URL's host and port.
fn reachable(url: &str) -> bool {
    let host_port = url.split("://").nth(1).unwrap_or(url).trim_end_matches('/');
    std::net::TcpStream::connect(host_port).is_ok()
}

/// The helloworld service in a process of its own, on `vars`.
fn spawn(vars: &HashMap<String, String>) -> (Child, mpsc::Receiver<Instant>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, "1")
        .env_remove("MICRO_PROFILE")
        .envs(vars)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the service process starts");
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, serving) = mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if line.starts_with("listening on ") {
                let _ = tx.send(Instant::now());
            }
        }
    });
    (child, serving)
}

/// Median and worst of `samples`.
fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let median = samples[samples.len() / 2];
    let worst = samples[samples.len() - 1];
    format!("{median:>10.1?} ({worst:.1?})")
}

async fn measure(kind: &str, url: Option<String>, rounds: usize) {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("MICRO_REGISTRY".into(), kind.into()),
        ("MICRO_BROKER".into(), "memory".into()),
    ]);
    if let Some(url) = &url {
        vars.insert("MICRO_REGISTRY_ADDRESS".into(), url.clone());
    }
    let (mut serving, mut first_call, mut gone, mut raw) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        // A client of its own each round, so that nothing is cached.
        let backends = {
            let vars = vars.clone();
            micro::Backends::from_vars(move |name| vars.get(name).cloned())
        };
        let registry = backends.registry().clone();
        let client = HelloworldClient::new(
            "helloworld",
            micro::Client::builder().backends(&backends).build(),
        );
        let mut watcher = registry.watch().await.expect("a watch");
        // Polling before the service exists, as a caller waiting for it.
        let poll = tokio::spawn(async move {
            loop {
                if client.greeting(Request { name: "x".into() }).await.is_ok() {
                    return Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let started = Instant::now();
        let (mut process, listening) = spawn(&vars);
        let listened =
            tokio::task::spawn_blocking(move || listening.recv_timeout(Duration::from_secs(30)))
                .await
                .unwrap()
                .expect("the service prints its address");
        let called = tokio::time::timeout(Duration::from_secs(30), poll)
            .await
            .expect("a first call by name within 30 s")
            .unwrap();
        serving.push(listened - started);
        first_call.push(called.saturating_duration_since(listened));

        // Give the registration time to be renewed once, as a running
        // service's is, then kill it.
        tokio::time::sleep(TTL / 2).await;
        let killed = Instant::now();
        process.kill().unwrap();
        let _ = process.wait();
        loop {
            let event = tokio::time::timeout(TTL * 4, watcher.next())
                .await
                .expect("the killed node leaves within four TTLs")
                .expect("the watch goes on")
                .expect("a change");
            if event.service.name == "helloworld" && event.kind == EventKind::Delete {
                break;
            }
        }
        gone.push(killed.elapsed());
        raw.push(raw_register(kind, url.as_deref(), round).await);
    }
    println!("{kind:>5}: start → serving     {}", summary(serving));
    println!(
        "{kind:>5}: serving → first call {}",
        summary(first_call.clone())
    );
    println!("{kind:>5}: raw register → found {}", summary(raw.clone()));
    first_call.sort();
    raw.sort();
    println!(
        "{kind:>5}: ratio (serving → first call) / (raw register → found), medians: {:.2}",
        first_call[first_call.len() / 2].as_secs_f64() / raw[raw.len() / 2].as_secs_f64()
    );
    println!(
        "{kind:>5}: SIGKILL → gone       {} with a TTL of {TTL:?}",
        summary(gone)
    );
}

/// The raw library's time from registering to another party finding it.
async fn raw_register(kind: &str, url: Option<&str>, round: usize) -> Duration {
    match kind {
        "mdns" => raw_mdns(round).await,
        "nats" => raw_nats(url.unwrap(), round).await,
        "etcd" => raw_etcd(url.unwrap(), round).await,
        other => unreachable!("{other}"),
    }
}

async fn raw_mdns(round: usize) -> Duration {
    tokio::task::spawn_blocking(move || {
        use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
        let on_lo = || {
            let daemon = ServiceDaemon::new().unwrap();
            daemon.disable_interface(IfKind::All).unwrap();
            daemon.enable_interface(IfKind::Name("lo".into())).unwrap();
            daemon
        };
        let (server, browser) = (on_lo(), on_lo());
        let ty = "_rawbench._tcp.local.";
        let events = browser.browse(ty).unwrap();
        let started = Instant::now();
        let info = ServiceInfo::new(
            ty,
            &format!("raw-{round}"),
            "raw-bench.local.",
            "127.0.0.1",
            9,
            &[("v", "1")][..],
        )
        .unwrap();
        server.register(info).unwrap();
        loop {
            match events.recv_timeout(Duration::from_secs(30)).unwrap() {
                ServiceEvent::ServiceResolved(_) => break,
                _ => continue,
            }
        }
        let found = started.elapsed();
        let _ = server.shutdown();
        let _ = browser.shutdown();
        found
    })
    .await
    .unwrap()
}

async fn raw_nats(url: &str, round: usize) -> Duration {
    let writer = async_nats::connect(url).await.unwrap();
    let reader = async_nats::connect(url).await.unwrap();
    let bucket = "raw-discovery-bench";
    let w = async_nats::jetstream::new(writer);
    let store = match w.get_key_value(bucket).await {
        Ok(s) => s,
        Err(_) => w
            .create_key_value(async_nats::jetstream::kv::Config {
                bucket: bucket.into(),
                history: 1,
                ..Default::default()
            })
            .await
            .unwrap(),
    };
    let read = async_nats::jetstream::new(reader)
        .get_key_value(bucket)
        .await
        .unwrap();
    let key = format!("node{round}.{}", std::process::id());
    let started = Instant::now();
    store.put(&key, "127.0.0.1:9".into()).await.unwrap();
    while read.get(&key).await.unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let found = started.elapsed();
    store.delete(&key).await.unwrap();
    found
}

async fn raw_etcd(url: &str, round: usize) -> Duration {
    use base64::Engine as _;
    use http_body_util::{BodyExt, Full};
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let post = |path: &str, body: String| {
        let request = http::Request::post(format!("{url}{path}"))
            .header("content-type", "application/json")
            .body(Full::new(bytes::Bytes::from(body)))
            .unwrap();
        let sent = client.request(request);
        async move {
            let reply = sent
                .await
                .unwrap()
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes();
            String::from_utf8_lossy(&reply).into_owned()
        }
    };
    let key = b64(&format!(
        "/raw-discovery-bench/node{round}-{}",
        std::process::id()
    ));
    let started = Instant::now();
    post(
        "/v3/kv/put",
        format!(r#"{{"key":"{key}","value":"{}"}}"#, b64("127.0.0.1:9")),
    )
    .await;
    while !post("/v3/kv/range", format!(r#"{{"key":"{key}"}}"#))
        .await
        .contains("\"kvs\"")
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let found = started.elapsed();
    post("/v3/kv/deleterange", format!(r#"{{"key":"{key}"}}"#)).await;
    found
}
