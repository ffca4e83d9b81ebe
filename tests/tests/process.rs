//! Two processes: the `greeter` binary serves, this test process calls it
//! with curl, a raw HTTP client and the typed client, and stops it with
//! signals.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use micro::client::CallOptions;
use micro::codec::ContentType;
use micro_tests::{GreeterClient, Hello, RawClient, Sleep};

/// A greeter process and the address it serves on.
struct Greeter {
    child: Child,
    addr: String,
    lines: mpsc::Receiver<String>,
}

impl Greeter {
    fn spawn(env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_greeter"));
        cmd.stdout(Stdio::piped())
            .env_remove("MICRO_SERVER_ADDRESS");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("greeter starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("greeter prints its address");
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        Self { child, addr, lines }
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Waits for the process to exit; returns its exit code.
    fn wait(&mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().expect("exited, not killed by a signal");
            }
            assert!(
                Instant::now() < deadline,
                "greeter did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn output(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }
}

impl Drop for Greeter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn curl_as_in_go_micros_readme() {
    let greeter = Greeter::spawn(&[]);
    let out = Command::new("curl")
        .args([
            "-sS",
            "-XPOST",
            "-H",
            "Content-Type: application/json",
            "-H",
            "Micro-Endpoint: Greeter.Hello",
            "-d",
            r#"{"name": "alice"}"#,
        ])
        .arg(format!("http://{}", greeter.addr))
        .output()
        .expect("curl runs (install it with apt-get install curl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        r#"{"message":"Hello alice"}"#
    );
}

#[tokio::test]
async fn typed_client_from_another_process() {
    let greeter = Greeter::spawn(&[]);
    let client = GreeterClient::new("greeter", micro::Client::new());
    for ct in [ContentType::Json, ContentType::MsgPack] {
        let opts = CallOptions::new()
            .address(greeter.addr.clone())
            .content_type(ct);
        let rsp = client
            .hello_with(Hello { name: "zoe".into() }, opts)
            .await
            .unwrap();
        assert_eq!(rsp.message, "Hello zoe");
    }
    let seen = client
        .whoami_with(
            CallOptions::new()
                .address(greeter.addr.clone())
                .metadata("x-user", "yan"),
        )
        .await
        .unwrap();
    assert_eq!(seen.user.as_deref(), Some("yan"));
}

async fn graceful_stop_with(signal: libc::c_int) {
    let mut greeter = Greeter::spawn(&[("GREETER_GRACE_MS", "5000")]);
    let addr = greeter.addr.clone();
    let raw = RawClient::new();
    // An in-flight request when the signal arrives…
    let in_flight = tokio::spawn({
        let raw = raw.clone();
        let addr = addr.clone();
        async move { raw.call(addr, "Greeter.Slow", &[], r#"{"ms":800}"#).await }
    });
    tokio::time::sleep(Duration::from_millis(250)).await;
    greeter.signal(signal);
    tokio::time::sleep(Duration::from_millis(150)).await;
    // …new connections are refused…
    let refused = tokio::net::TcpStream::connect(&addr).await;
    assert!(
        refused.is_err(),
        "a new connection was accepted while stopping"
    );
    // …the in-flight one finishes…
    let rsp = in_flight.await.unwrap();
    assert_eq!(rsp.status, 200);
    assert_eq!(rsp.json()["message"], "slept 800 ms");
    // …and the process exits 0.
    assert_eq!(
        tokio::task::block_in_place(|| greeter.wait(Duration::from_secs(10))),
        0
    );
    assert_eq!(greeter.output(), ["stopping", "stopped"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    graceful_stop_with(libc::SIGTERM).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drains_and_exits_zero() {
    graceful_stop_with(libc::SIGINT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_period_bounds_the_drain() {
    let mut greeter = Greeter::spawn(&[("GREETER_GRACE_MS", "300")]);
    let addr = greeter.addr.clone();
    let stuck = tokio::spawn(async move {
        GreeterClient::new("greeter", micro::Client::new())
            .slow_with(
                Sleep { ms: 30_000 },
                CallOptions::new()
                    .address(addr)
                    .timeout(Duration::from_secs(20)),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(250)).await;
    let started = Instant::now();
    greeter.signal(libc::SIGTERM);
    let code = tokio::task::block_in_place(|| greeter.wait(Duration::from_secs(10)));
    assert_eq!(code, 0);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The dropped request fails at the connection level, as a 503.
    let err = stuck.await.unwrap().unwrap_err();
    assert_eq!(err.code(), 503, "{err}");
}
