//! Run with: cargo bench -p micro-examples --bench rpc
//!
//! Requests per second and latency of a micro service against a raw axum
//! handler doing the same work (POST /, JSON `{"name":…}` → `{"message":…}`),
//! in one process and one run, at 1 and 64 concurrent requests.
//!
//! Rows:
//! - `raw axum`: an axum handler with `Json` in and out, called by a plain
//!   hyper client that encodes the request and decodes the reply with
//!   serde, as a user of a plain HTTP client would;
//! - `micro http json|msgpack`: the micro service called by the same hyper
//!   client, the same way, with `Micro-Endpoint`;
//! - `micro http json +metrics` (feature `metrics`): the same, to a second
//!   service that keeps its Prometheus metrics (the other rows' service
//!   has them off);
//! - `micro typed json|msgpack`: through the generated client, by address;
//! - `micro typed auth`: by address, to a second service with auth on,
//!   every call carrying a JWT the server verifies (EdDSA) and checks
//!   against a rule;
//! - `micro typed tls` (feature `tls`): by address, to a third service
//!   serving HTTPS, the client verifying it against the test CA;
//! - `micro typed by name`: through the generated client, found by name
//!   through mDNS and the selector (the service and the client each have
//!   their own mDNS daemon, as two processes would);
//! - `micro greeter protobuf|json` (feature `protobuf`): the protobuf
//!   greeter (examples/proto/greeter.proto) through its generated client,
//!   by address, in protobuf and in JSON: the same service, two codecs.
//!
//! It also times discovery: from a service's start to a client's first
//! successful call by name, and from a graceful stop to the node leaving a
//! watcher. For mDNS the benchmark moves into a network namespace of its own
//! (it needs root; without it, it falls back to the memory registry and
//! says so), so no multicast leaves the machine.
//!
//! The servers run on a runtime of their own (threads `bench-server`), the
//! clients on another, so that the CPU each side spends per request shows
//! apart: `cpu µs/req` is the whole process's, `client µs` the client
//! side's (everything but the server threads).
//!
//! `BENCH_TRACING=1` installs a `tracing` subscriber that records every
//! span (formatted to nowhere), for the cost of tracing on: compare the
//! ratios to raw axum with and without it.
//!
//! `BENCH_SECS` sets the seconds per row (default 3), spread over seven
//! interleaved rounds; `BENCH_FILTER` keeps only rows whose name contains it.

#[path = "common/servers.rs"]
mod servers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use micro::client::CallOptions;
use micro::codec::ContentType;
use micro::registry::{EventKind, MdnsRegistry, MemoryRegistry, Registry};
use micro::server::BoxFuture;
use micro_examples::helloworld::{Helloworld, HelloworldClient, Request, Response};

use servers::{server_cpu_seconds, server_runtime};

type Hyper = HyperClient<HttpConnector, Full<Bytes>>;

/// The system allocator, counting each thread's allocations.
struct Counting;

thread_local! {
    static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

// SAFETY: every call is passed straight to the system allocator; the count
// is a const-initialised thread local, which does not allocate.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: as above.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: as above.
        unsafe { std::alloc::System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations (and reallocations) this thread made so far.
fn allocations() -> u64 {
    ALLOCATIONS.with(std::cell::Cell::get)
}

/// What one row measured.
struct Row {
    name: &'static str,
    concurrency: usize,
    count: usize,
    elapsed: f64,
    /// CPU seconds the whole process spent (client and server alike).
    cpu: f64,
    /// CPU seconds the server threads spent.
    server_cpu: f64,
    /// Allocations on the client's thread and on the server's.
    allocs: (u64, u64),
    /// Requests per second in each round.
    rounds: Vec<f64>,
    latencies: Vec<Duration>,
}

impl Row {
    fn rps(&self) -> f64 {
        self.count as f64 / self.elapsed
    }

    fn cpu_per_request(&self) -> Duration {
        Duration::from_secs_f64(self.cpu / self.count as f64)
    }

    fn client_cpu_per_request(&self) -> Duration {
        Duration::from_secs_f64((self.cpu - self.server_cpu) / self.count as f64)
    }

    fn pct(&self, p: f64) -> Duration {
        let n = self.latencies.len();
        self.latencies[((n as f64 * p) as usize).min(n - 1)]
    }
}

type Call = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// Runs `call` from `concurrency` tasks for `dur`; returns the latencies.
async fn run(call: &Call, concurrency: usize, dur: Duration) -> (Vec<Duration>, f64) {
    let started = Instant::now();
    let deadline = started + dur;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(1 << 14);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    call().await;
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all, started.elapsed().as_secs_f64())
}

/// Measures every row at `concurrency`, interleaved in `ROUNDS` rounds so
/// that drift in the machine's speed spreads over all rows alike.
async fn measure(
    rows: &[(&'static str, Call)],
    concurrency: usize,
    secs: f64,
    servers: &tokio::runtime::Handle,
) -> Vec<Row> {
    let server_allocs = || async { servers.spawn(async { allocations() }).await.unwrap() };
    const ROUNDS: u32 = 7;
    let slice = Duration::from_secs_f64(secs / f64::from(ROUNDS));
    let mut out: Vec<Row> = rows
        .iter()
        .map(|(name, _)| Row {
            name,
            concurrency,
            count: 0,
            elapsed: 0.0,
            cpu: 0.0,
            server_cpu: 0.0,
            allocs: (0, 0),
            rounds: Vec::new(),
            latencies: Vec::new(),
        })
        .collect();
    for (_, call) in rows {
        run(call, concurrency, Duration::from_millis(200)).await;
    }
    for _ in 0..ROUNDS {
        for (row, (_, call)) in out.iter_mut().zip(rows) {
            let (cpu, server) = (cpu_seconds(), server_cpu_seconds());
            let allocs = (allocations(), server_allocs().await);
            let (lat, elapsed) = run(call, concurrency, slice).await;
            row.cpu += cpu_seconds() - cpu;
            row.server_cpu += server_cpu_seconds() - server;
            row.allocs.0 += allocations() - allocs.0;
            row.allocs.1 += server_allocs().await - allocs.1;
            row.rounds.push(lat.len() as f64 / elapsed);
            row.count += lat.len();
            row.elapsed += elapsed;
            row.latencies.extend(lat);
        }
    }
    for row in &mut out {
        row.latencies.sort_unstable();
    }
    out
}

/// One call through the plain hyper client: the request encoded with
/// `codec`, the reply decoded with it, as a user of a plain HTTP client
/// would do by hand.
async fn send(client: &Hyper, addr: SocketAddr, headers: &[(&str, &str)], codec: ContentType) {
    let request = Request {
        name: "alice".into(),
    };
    let body = match codec {
        ContentType::MsgPack => rmp_serde::to_vec_named(&request).unwrap(),
        _ => serde_json::to_vec(&request).unwrap(),
    };
    let mut req = http::Request::post(format!("http://{addr}/"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let rsp = client
        .request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .expect("request");
    assert_eq!(rsp.status(), 200);
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    let reply: Response = match codec {
        ContentType::MsgPack => rmp_serde::from_slice(&body).unwrap(),
        _ => serde_json::from_slice(&body).unwrap(),
    };
    assert_eq!(reply.message, "Hello alice");
}

async fn raw_axum() -> SocketAddr {
    async fn greeting(Json(req): Json<Request>) -> Json<Response> {
        Json(Response {
            message: format!("Hello {}", req.name),
        })
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = axum::Router::new().route("/", axum::routing::post(greeting));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Moves this process into a network namespace of its own with `lo` up,
/// so that mDNS stays inside it. Returns false if that is not allowed.
fn isolate() -> bool {
    // SAFETY: unshare(2) changes only this thread's namespaces; no other
    // thread exists yet, and the runtime's threads inherit it.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return false;
    }
    std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .is_ok_and(|s| s.success())
}

fn main() {
    // Tracing on: a subscriber that records every span (formatted, to
    // nowhere), as a service that logs would have.
    if std::env::var_os("BENCH_TRACING").is_some() {
        tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .init();
        println!("tracing on: every span recorded by a fmt subscriber writing nowhere");
    }
    let mdns = isolate();
    if !mdns {
        println!("note: cannot make a network namespace; by-name rows use the memory registry");
    }
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    // One thread each, as a client process and a server process on a
    // core each would be.
    let servers = server_runtime();
    let clients = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    clients.block_on(bench(secs, mdns, servers));
}

/// A row calling `Helloworld.Greeting` through the typed client `t` with
/// `opts`, checking the reply.
fn typed_row(t: HelloworldClient, opts: CallOptions) -> Call {
    Arc::new(move || {
        let (t, opts) = (t.clone(), opts.clone());
        Box::pin(async move {
            let rsp = t
                .greeting_with(
                    Request {
                        name: "alice".into(),
                    },
                    opts,
                )
                .await
                .unwrap();
            assert_eq!(rsp.message, "Hello alice");
        })
    })
}

/// A row calling the protobuf greeter's `Greeter.SayHello` by address
/// with codec `ct`, checking the reply.
#[cfg(feature = "protobuf")]
fn greeter_row(greeter: &micro::ServiceHandle, ct: ContentType) -> Call {
    use micro_examples::greeter::{GreeterClient, HelloRequest};
    let client = GreeterClient::new(
        "greeter",
        micro::Client::builder()
            .registry(Arc::new(MemoryRegistry::new()))
            .build(),
    );
    let opts = CallOptions::new()
        .address(greeter.local_addr().to_string())
        .content_type(ct);
    Arc::new(move || {
        let (client, opts) = (client.clone(), opts.clone());
        Box::pin(async move {
            let request = HelloRequest {
                name: "alice".into(),
                times: 2,
            };
            let reply = client.say_hello_with(request, opts).await.unwrap();
            assert_eq!(reply.echoes.len(), 2);
        })
    })
}

/// The servers under test, started on the servers' runtime.
struct Servers {
    raw: SocketAddr,
    micro: micro::ServiceHandle,
    /// The same service with its metrics on (feature `metrics`).
    observed: micro::ServiceHandle,
    /// The same service with auth on, and a token it accepts.
    with_auth: (micro::ServiceHandle, String),
    /// The same service over TLS, and the CA file that verifies it.
    #[cfg(feature = "tls")]
    with_tls: (micro::ServiceHandle, std::path::PathBuf),
    /// The protobuf greeter (feature `protobuf`).
    #[cfg(feature = "protobuf")]
    greeter: micro::ServiceHandle,
}

/// The service with auth on: one rule lets any account in.
async fn with_auth() -> (micro::ServiceHandle, String) {
    use micro::auth::{Account, AccountKind, Auth, Rule, TokenKind};
    let auth = Auth::issuer("bench")
        .rules(vec![Rule::grant("*", "*")])
        .build()
        .unwrap();
    let account = Account::new("bench", AccountKind::User, vec!["bench".into()]);
    let token = auth
        .issue(&account, TokenKind::Access, Duration::from_secs(3600))
        .unwrap();
    let service = micro::Service::new("helloworld-auth")
        .address("127.0.0.1:0")
        .registry(Arc::new(MemoryRegistry::new()))
        .auth(auth)
        .handle(Helloworld)
        .start()
        .await
        .unwrap();
    (service, token)
}

/// The service over TLS, with a certificate for 127.0.0.1 from a CA made
/// here; returns the CA's PEM file.
#[cfg(feature = "tls")]
async fn with_tls() -> (micro::ServiceHandle, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = std::env::temp_dir().join(format!("micro-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    let tls = micro::tls::ServerTls::from_pem_files(dir.join("server.pem"), dir.join("server.key"))
        .unwrap();
    let service = micro::Service::new("helloworld-tls")
        .address("127.0.0.1:0")
        .registry(Arc::new(MemoryRegistry::new()))
        .tls(tls)
        .handle(Helloworld)
        .start()
        .await
        .unwrap();
    (service, dir.join("ca.pem"))
}

async fn bench(secs: f64, mdns: bool, servers: tokio::runtime::Handle) {
    let (server_registry, registry): (Arc<dyn Registry>, Arc<dyn Registry>) = if mdns {
        let on_lo = || Arc::new(MdnsRegistry::builder().interfaces(["lo"]).build());
        (on_lo(), on_lo())
    } else {
        let shared = Arc::new(MemoryRegistry::new());
        (shared.clone(), shared)
    };
    discovery(&server_registry, &registry).await;
    let started = {
        let server_registry = server_registry.clone();
        servers.spawn(async move {
            let raw = raw_axum().await;
            // The rows' service keeps no metrics; `observed` does, when
            // micro's `metrics` feature is built in.
            let micro = micro::Service::new("helloworld")
                .address("127.0.0.1:0")
                .registry(server_registry)
                .metrics(false)
                .handle(Helloworld)
                .start()
                .await
                .unwrap();
            let observed = micro::Service::new("helloworld-observed")
                .address("127.0.0.1:0")
                .registry(Arc::new(MemoryRegistry::new()))
                .handle(Helloworld)
                .start()
                .await
                .unwrap();
            Servers {
                raw,
                micro,
                observed,
                with_auth: with_auth().await,
                #[cfg(feature = "tls")]
                with_tls: with_tls().await,
                #[cfg(feature = "protobuf")]
                greeter: micro::Service::new("greeter")
                    .address("127.0.0.1:0")
                    .registry(Arc::new(MemoryRegistry::new()))
                    .metrics(false)
                    .handle(micro_examples::greeter::Greeter)
                    .start()
                    .await
                    .unwrap(),
            }
        })
    };
    let Servers {
        raw: raw_addr,
        micro: service,
        observed,
        with_auth: (auth_service, token),
        #[cfg(feature = "tls")]
            with_tls: (tls_service, ca),
        #[cfg(feature = "protobuf")]
        greeter,
    } = started.await.unwrap();
    let micro_addr = service.local_addr();

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let hyper: Hyper = HyperClient::builder(TokioExecutor::new()).build(connector);
    let typed = HelloworldClient::new(
        "helloworld",
        micro::Client::builder().registry(registry.clone()).build(),
    );

    // What each typed call allocates room for (a spawned call, or the
    // benchmark's boxed one): more than 1 KiB leaves the allocator's fast
    // path.
    let typed_future = typed.greeting_with(Request { name: "x".into() }, CallOptions::new());
    println!(
        "a typed call's future: {} bytes",
        std::mem::size_of_val(&typed_future)
    );
    drop(typed_future);
    // Rows by name start once the client's registry has seen the service.
    let wait = Instant::now();
    while typed.greeting(Request { name: "x".into() }).await.is_err() {
        assert!(
            wait.elapsed() < Duration::from_secs(20),
            "helloworld not discovered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut rows: Vec<(&'static str, Call)> = Vec::new();
    {
        let h = hyper.clone();
        rows.push((
            "raw axum",
            Arc::new(move || {
                let h = h.clone();
                Box::pin(async move {
                    let headers = [("content-type", "application/json")];
                    send(&h, raw_addr, &headers, ContentType::Json).await
                })
            }),
        ));
    }
    for (name, ct, codec) in [
        ("micro http json", "application/json", ContentType::Json),
        (
            "micro http msgpack",
            "application/msgpack",
            ContentType::MsgPack,
        ),
    ] {
        let h = hyper.clone();
        rows.push((
            name,
            Arc::new(move || {
                let h = h.clone();
                Box::pin(async move {
                    let headers = [
                        ("content-type", ct),
                        ("micro-endpoint", "Helloworld.Greeting"),
                    ];
                    send(&h, micro_addr, &headers, codec).await
                })
            }),
        ));
    }
    if cfg!(feature = "metrics") {
        let h = hyper.clone();
        let observed_addr = observed.local_addr();
        rows.push((
            "micro http json +metrics",
            Arc::new(move || {
                let h = h.clone();
                Box::pin(async move {
                    let headers = [
                        ("content-type", "application/json"),
                        ("micro-endpoint", "Helloworld.Greeting"),
                    ];
                    send(&h, observed_addr, &headers, ContentType::Json).await
                })
            }),
        ));
    }
    let address = micro_addr.to_string();
    for (name, ct) in [
        ("micro typed json", ContentType::Json),
        ("micro typed msgpack", ContentType::MsgPack),
    ] {
        let opts = CallOptions::new().address(address.clone()).content_type(ct);
        rows.push((name, typed_row(typed.clone(), opts)));
    }
    let opts = CallOptions::new()
        .address(auth_service.local_addr().to_string())
        .token(&token);
    rows.push(("micro typed auth", typed_row(typed.clone(), opts)));
    #[cfg(feature = "tls")]
    {
        let client = micro::Client::builder()
            .registry(registry.clone())
            .tls(&micro::tls::ClientTls::ca_file(&ca).unwrap())
            .unwrap()
            .build();
        let opts = CallOptions::new().address(tls_service.local_addr().to_string());
        let tls = HelloworldClient::new("helloworld", client);
        rows.push(("micro typed tls", typed_row(tls, opts)));
    }
    rows.push((
        "micro typed by name",
        typed_row(typed.clone(), CallOptions::new()),
    ));
    #[cfg(feature = "protobuf")]
    for (name, ct) in [
        ("micro greeter protobuf", ContentType::Protobuf),
        ("micro greeter json", ContentType::Json),
    ] {
        rows.push((name, greeter_row(&greeter, ct)));
    }
    let filter = std::env::var("BENCH_FILTER").unwrap_or_default();
    rows.retain(|(name, _)| name.contains(filter.as_str()));

    let mut results = Vec::new();
    for concurrency in [1, 64] {
        results.extend(measure(&rows, concurrency, secs, &servers).await);
    }
    service.stop().await.unwrap();
    observed.stop().await.unwrap();
    auth_service.stop().await.unwrap();
    #[cfg(feature = "tls")]
    tls_service.stop().await.unwrap();
    #[cfg(feature = "protobuf")]
    greeter.stop().await.unwrap();
    report(&results);
}

/// Times a service's start to a client's first call by name, and its
/// graceful stop to its leaving a watcher.
async fn discovery(server_registry: &Arc<dyn Registry>, client_registry: &Arc<dyn Registry>) {
    let client = HelloworldClient::new(
        "discovery",
        micro::Client::builder()
            .registry(client_registry.clone())
            .build(),
    );
    let mut watcher = client_registry.watch().await.unwrap();
    let started = Instant::now();
    let service = micro::Service::new("discovery")
        .address("127.0.0.1:0")
        .registry(server_registry.clone())
        .handle(Helloworld)
        .start()
        .await
        .unwrap();
    loop {
        match client.greeting(Request { name: "x".into() }).await {
            Ok(_) => break,
            Err(e) if e.code() == 503 && started.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("discovery failed: {e}"),
        }
    }
    let first_call = started.elapsed();
    let stopped = Instant::now();
    service.stop().await.unwrap();
    let stop_returned = stopped.elapsed();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), watcher.next())
            .await
            .expect("the stop is seen")
            .unwrap()
            .unwrap();
        if event.service.name == "discovery" && event.kind == EventKind::Delete {
            break;
        }
    }
    println!(
        "discovery ({}): start to first call by name {first_call:?}; graceful stop to gone from a watcher {:?} (stop() returned after {stop_returned:?})",
        client_registry.name(),
        stopped.elapsed()
    );
}

/// User plus system CPU time of this process so far.
fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The median of the per-round throughput ratios against raw axum: each
/// round's rows ran back to back, so the ratio cancels drift between
/// rounds.
fn ratio(row: &Row, raw: &Row) -> f64 {
    let mut ratios: Vec<f64> = row
        .rounds
        .iter()
        .zip(&raw.rounds)
        .map(|(r, base)| r / base)
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

fn report(rows: &[Row]) {
    println!(
        "{:<22} {:>5} {:>10} {:>8} {:>8} {:>11} {:>9} {:>11} {:>8}",
        "row",
        "conc",
        "req/s",
        "p50 µs",
        "p99 µs",
        "cpu µs/req",
        "client µs",
        "allocs c/s",
        "vs raw"
    );
    for row in rows {
        let raw = rows
            .iter()
            .find(|r| r.name == "raw axum" && r.concurrency == row.concurrency);
        let ratio = raw.map_or(f64::NAN, |raw| ratio(row, raw));
        println!(
            "{:<22} {:>5} {:>10.0} {:>8} {:>8} {:>11.1} {:>9.1} {:>5.1}/{:<5.1} {:>7.2}x",
            row.name,
            row.concurrency,
            row.rps(),
            row.pct(0.50).as_micros(),
            row.pct(0.99).as_micros(),
            row.cpu_per_request().as_secs_f64() * 1e6,
            row.client_cpu_per_request().as_secs_f64() * 1e6,
            row.allocs.0 as f64 / row.count as f64,
            row.allocs.1 as f64 / row.count as f64,
            ratio
        );
    }
    for concurrency in [1, 64] {
        let find = |name: &str| {
            rows.iter()
                .find(|r| r.name == name && r.concurrency == concurrency)
        };
        if let (Some(typed), Some(plain)) = (find("micro typed json"), find("micro http json")) {
            println!(
                "typed client / plain client (json) at {concurrency}: {:.2}x",
                ratio(typed, plain)
            );
        }
        if let (Some(auth), Some(plain)) = (find("micro typed auth"), find("micro typed json")) {
            println!(
                "auth (a verified JWT) / none, typed json at {concurrency}: {:.2}x",
                ratio(auth, plain)
            );
        }
        if let (Some(tls), Some(plain)) = (find("micro typed tls"), find("micro typed json")) {
            println!(
                "TLS / plain, typed json at {concurrency}: {:.2}x",
                ratio(tls, plain)
            );
        }
        if let (Some(protobuf), Some(json)) =
            (find("micro greeter protobuf"), find("micro greeter json"))
        {
            println!(
                "protobuf / json, typed, one service at {concurrency}: {:.2}x",
                ratio(protobuf, json)
            );
        }
        if let (Some(by_name), Some(by_addr)) =
            (find("micro typed by name"), find("micro typed json"))
        {
            println!(
                "typed client by name / by address at {concurrency}: {:.2}x",
                ratio(by_name, by_addr)
            );
        }
    }
}
