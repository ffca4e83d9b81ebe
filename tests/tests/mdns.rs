//! Discovery with real mDNS between real processes. Every test runs in
//! network namespaces it makes, so no multicast leaves it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use micro::Client;
use micro::registry::{Endpoint, EventKind, MdnsRegistry, Node, Record, RegisterOptions, Registry};
use micro::selector::RoundRobin;
use micro_tests::GreeterClient;
use micro_tests::netns::{TwoHosts, isolated};
use micro_tests::process::Greeter;

const GREETER: &str = env!("CARGO_BIN_EXE_greeter");

/// A greeter on loopback, registered with mDNS.
fn greeter(extra: &[(&str, &str)]) -> Greeter {
    let mut env = vec![
        ("MICRO_REGISTRY", "mdns"),
        ("MICRO_MDNS_INTERFACES", "lo"),
        ("MICRO_SERVER_ADDRESS", "127.0.0.1:0"),
    ];
    env.extend_from_slice(extra);
    Greeter::spawn(GREETER, &env)
}

fn registry() -> Arc<MdnsRegistry> {
    Arc::new(MdnsRegistry::builder().interfaces(["lo"]).build())
}

/// Waits until `name` has exactly `n` nodes; returns how long it took.
async fn wait_for_nodes(
    registry: &dyn Registry,
    name: &str,
    n: usize,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let count = registry
            .get_service(name)
            .await
            .map(|records| records.iter().map(|r| r.nodes.len()).sum())
            .unwrap_or(0);
        if count == n {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{name} has {count} nodes, not {n}, after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Calls in a loop until stopped; counts successes and failures.
struct Traffic {
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Traffic {
    fn start(client: GreeterClient) -> Self {
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (o, f, s) = (ok.clone(), failed.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut errors = Vec::new();
            while !s.load(Ordering::SeqCst) {
                match client.pid().await {
                    Ok(_) => o.fetch_add(1, Ordering::SeqCst),
                    Err(e) => {
                        errors.push(e.to_string());
                        f.fetch_add(1, Ordering::SeqCst)
                    }
                };
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            errors
        });
        Self {
            ok,
            failed,
            stop,
            task,
        }
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let errors = self.task.await.unwrap();
        assert_eq!(errors.len(), self.failed.load(Ordering::SeqCst));
        (self.ok.load(Ordering::SeqCst), errors)
    }
}

#[test]
#[cfg_attr(
    not(micro_test_root),
    ignore = "needs root: it makes network namespaces for mDNS"
)]
fn three_instances_are_found_by_name_and_balanced() {
    isolated(|| async {
        let started = Instant::now();
        let nodes: Vec<Greeter> = (0..3).map(|_| greeter(&[])).collect();
        let registry = registry();
        let found = wait_for_nodes(&*registry, "greeter", 3, Duration::from_secs(15)).await;
        println!("three nodes discovered {found:?} after the last one started");
        println!("start-to-discovery for the set: {:?}", started.elapsed());

        let record = &registry.get_service("greeter").await.unwrap()[0];
        assert!(record.endpoints.iter().any(|e| e.name == "Greeter.Pid"));
        assert_eq!(record.nodes[0].metadata["protocol"], "http");

        let rr = GreeterClient::new(
            "greeter",
            Client::builder()
                .registry(registry.clone())
                .selector(Arc::new(RoundRobin::new()))
                .build(),
        );
        let mut hits: HashMap<u32, usize> = HashMap::new();
        for _ in 0..300 {
            *hits.entry(rr.pid().await.unwrap()).or_default() += 1;
        }
        let pids: Vec<u32> = nodes.iter().map(Greeter::pid).collect();
        assert_eq!(hits.len(), 3, "{hits:?}");
        for pid in &pids {
            assert_eq!(hits.get(pid), Some(&100), "{hits:?}");
        }

        let random = GreeterClient::new(
            "greeter",
            Client::builder().registry(registry.clone()).build(),
        );
        let mut seen = std::collections::HashSet::new();
        for _ in 0..300 {
            seen.insert(random.pid().await.unwrap());
        }
        assert_eq!(seen.len(), 3);
    });
}

#[test]
#[cfg_attr(
    not(micro_test_root),
    ignore = "needs root: it makes network namespaces for mDNS"
)]
fn streams_find_their_service_by_name_and_spread_over_processes() {
    isolated(|| async {
        let nodes: Vec<Greeter> = (0..3).map(|_| greeter(&[])).collect();
        let registry = registry();
        wait_for_nodes(&*registry, "greeter", 3, Duration::from_secs(15)).await;
        // The stream flag travels in the mDNS record.
        let record = &registry.get_service("greeter").await.unwrap()[0];
        let talk = record
            .endpoints
            .iter()
            .find(|e| e.name == "Greeter.Talk")
            .expect("Greeter.Talk registered");
        assert_eq!(
            talk.metadata.get("stream").map(String::as_str),
            Some("true")
        );

        let rr = GreeterClient::new(
            "greeter",
            Client::builder()
                .registry(registry.clone())
                .selector(Arc::new(RoundRobin::new()))
                .build(),
        );
        // Thirty streams open at once, ten on each process.
        let mut streams = Vec::new();
        let mut hits: HashMap<u32, usize> = HashMap::new();
        for _ in 0..30 {
            let mut stream = rr.talk().await.unwrap();
            let pid: u32 = stream.recv().await.unwrap().unwrap().parse().unwrap();
            *hits.entry(pid).or_default() += 1;
            streams.push((pid, stream));
        }
        for node in &nodes {
            assert_eq!(hits.get(&node.pid()), Some(&10), "{hits:?}");
        }
        for (i, (pid, stream)) in streams.iter_mut().enumerate() {
            stream.send(format!("hello {i}")).await.unwrap();
            assert_eq!(
                stream.recv().await.unwrap().unwrap(),
                format!("{pid}: hello {i}")
            );
            stream.close_send().await.unwrap();
            assert_eq!(stream.recv().await.unwrap(), None);
        }
    });
}

#[test]
#[cfg_attr(
    not(micro_test_root),
    ignore = "needs root: it makes network namespaces for mDNS"
)]
fn kill_9_loses_no_call_and_the_node_expires_with_its_ttl() {
    isolated(|| async {
        let ttl = [("GREETER_TTL_MS", "2000"), ("GREETER_INTERVAL_MS", "500")];
        let mut nodes: Vec<Greeter> = (0..3).map(|_| greeter(&ttl)).collect();
        let registry = registry();
        wait_for_nodes(&*registry, "greeter", 3, Duration::from_secs(15)).await;
        let client = GreeterClient::new(
            "greeter",
            Client::builder().registry(registry.clone()).build(),
        );
        let traffic = Traffic::start(client);
        tokio::time::sleep(Duration::from_millis(500)).await;

        let killed_at = Instant::now();
        nodes[1].kill();
        let gone = wait_for_nodes(&*registry, "greeter", 2, Duration::from_secs(6)).await;
        println!("killed node left the registry {gone:?} after SIGKILL (TTL 2 s)");
        assert!(gone <= Duration::from_millis(2000 + 750), "{gone:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;

        let (ok, errors) = traffic.finish().await;
        assert!(
            errors.is_empty(),
            "{} calls failed: {errors:?}",
            errors.len()
        );
        assert!(ok > 100, "only {ok} calls in {:?}", killed_at.elapsed());
    });
}

#[test]
#[cfg_attr(
    not(micro_test_root),
    ignore = "needs root: it makes network namespaces for mDNS"
)]
fn rolling_restart_loses_no_call() {
    isolated(|| async {
        let mut nodes: Vec<Greeter> = (0..3).map(|_| greeter(&[])).collect();
        let registry = registry();
        wait_for_nodes(&*registry, "greeter", 3, Duration::from_secs(15)).await;
        let mut watcher = registry.watch().await.unwrap();
        let client = GreeterClient::new(
            "greeter",
            Client::builder().registry(registry.clone()).build(),
        );
        let traffic = Traffic::start(client);
        tokio::time::sleep(Duration::from_millis(300)).await;

        for node in &mut nodes {
            let old = node.addr.clone();
            let stopped = Instant::now();
            node.signal(libc::SIGTERM);
            // The watcher sees the node leave within 2 s of the stop.
            loop {
                let event = tokio::time::timeout(Duration::from_secs(2), watcher.next())
                    .await
                    .unwrap_or_else(|_| panic!("node {old} still registered 2 s after SIGTERM"))
                    .unwrap()
                    .unwrap();
                let still_there = event.service.nodes.iter().any(|n| n.address == old);
                if (event.kind == EventKind::Delete) == still_there {
                    println!("stopped node left a watcher after {:?}", stopped.elapsed());
                    break;
                }
            }
            assert_eq!(
                tokio::task::block_in_place(|| node.wait(Duration::from_secs(10))),
                0
            );
            *node = greeter(&[]);
            wait_for_nodes(&*registry, "greeter", 3, Duration::from_secs(15)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (ok, errors) = traffic.finish().await;
        assert!(
            errors.is_empty(),
            "{} calls failed: {errors:?}",
            errors.len()
        );
        assert!(ok > 100, "only {ok} calls");
    });
}

#[test]
#[cfg_attr(
    not(micro_test_root),
    ignore = "needs root: it makes network namespaces for mDNS"
)]
fn a_service_with_300_endpoints_round_trips() {
    isolated(|| async {
        let endpoints: Vec<Endpoint> = (0..300)
            .map(|i| Endpoint::new(format!("Big.Method{i:03}"), format!("Request{i}"), "Reply"))
            .collect();
        let mut record = Record::new("big");
        record.endpoints = endpoints.clone();
        record
            .nodes
            .push(Node::new("big-1", "127.0.0.1:4000").with_metadata("protocol", "http"));

        let publisher = registry();
        publisher
            .register(&record, RegisterOptions::default())
            .await
            .unwrap();
        // A second daemon in this process, as another process would see it.
        let browser = registry();
        wait_for_nodes(&*browser, "big", 1, Duration::from_secs(15)).await;
        let found = browser.get_service("big").await.unwrap();
        assert_eq!(found[0].endpoints, endpoints);
        assert_eq!(found[0].nodes[0].address, "127.0.0.1:4000");

        publisher.deregister(&record).await.unwrap();
        wait_for_nodes(&*browser, "big", 0, Duration::from_secs(5)).await;
    });
}

#[test]
#[cfg_attr(
    not(micro_test_root),
    ignore = "needs root: it makes network namespaces for mDNS"
)]
fn two_hosts_over_a_veth_pair() {
    let hosts = TwoHosts::new(91);
    let server_env = [
        ("MICRO_REGISTRY", "mdns"),
        ("MICRO_MDNS_INTERFACES", hosts.interfaces[0].as_str()),
        ("MICRO_SERVER_ADDRESS", "0.0.0.0:0"),
    ];
    let server = Greeter::spawn_command(hosts.command(0, GREETER), &server_env);
    let out = hosts
        .command(1, env!("CARGO_BIN_EXE_caller"))
        .arg("greeter")
        .env("MICRO_REGISTRY", "mdns")
        .env("MICRO_MDNS_INTERFACES", &hosts.interfaces[1])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `ip netns exec` forks, so the child's pid is not the server's; the
    // server answering at all, across the veth pair, is the point.
    assert!(stdout.starts_with("served by "), "{stdout}");
    drop(server);
}

#[test]
#[cfg_attr(
    not(all(micro_test_root, micro_test_zeroconf)),
    ignore = "needs root and python3 with zeroconf: set MICRO_TEST_ZEROCONF=1"
)]
fn a_standard_dns_sd_browser_lists_micro_services() {
    let have = micro_tests::python_has("zeroconf");
    micro_tests::require_tool(
        have,
        "MICRO_TEST_ZEROCONF",
        "python3 zeroconf",
        "pip install zeroconf",
    );
    isolated(|| async {
        let node = greeter(&[]);
        let registry = registry();
        wait_for_nodes(&*registry, "greeter", 1, Duration::from_secs(15)).await;
        let script = r#"
import time
from zeroconf import ServiceBrowser, Zeroconf, IPVersion
zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
found = {}
class Listener:
    def add_service(self, zc, type_, name):
        info = zc.get_service_info(type_, name, 3000)
        found[name] = info
    def update_service(self, zc, type_, name): pass
    def remove_service(self, zc, type_, name): pass
ServiceBrowser(zc, "_micro._tcp.local.", Listener())
deadline = time.time() + 8
while time.time() < deadline and not any(found.values()):
    time.sleep(0.1)
for name, info in found.items():
    props = {k.decode(): (v or b"").decode() for k, v in (info.properties if info else {}).items()}
    print(name, info.port if info else None, props.get("service"), props.get("version"))
zc.close()
"#;
        let stdout = micro_tests::python(script, Vec::new()).await;
        let port = node.addr.rsplit(':').next().unwrap();
        let line = stdout
            .lines()
            .find(|l| l.starts_with("greeter-") && l.contains("._micro._tcp.local."))
            .unwrap_or_else(|| panic!("zeroconf did not list the greeter: {stdout}"));
        assert!(line.ends_with(&format!(" {port} greeter latest")), "{line}");
    });
}

#[tokio::test]
async fn the_default_registry_is_mdns_unless_told_otherwise() {
    // Only names are compared: nothing here starts a daemon.
    let client = Client::new();
    let expected = match std::env::var("MICRO_REGISTRY").ok().as_deref() {
        Some("memory") => "memory",
        _ => "mdns",
    };
    assert_eq!(client.registry().name(), expected);
}
