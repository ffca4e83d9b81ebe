//! Two processes: the `greeter` binary serves, this test process calls it
//! with curl, a raw HTTP client and the typed client, and stops it with
//! signals.

use std::process::Command;
use std::time::{Duration, Instant};

use micro::client::CallOptions;
use micro::codec::ContentType;
use micro_tests::process::Greeter;
use micro_tests::{GreeterClient, Hello, RawClient, Sleep};

/// The greeter binary with the memory registry: these tests call by
/// address and stay off multicast.
fn spawn(env: &[(&str, &str)]) -> Greeter {
    let mut all = vec![("MICRO_REGISTRY", "memory")];
    all.extend_from_slice(env);
    Greeter::spawn(env!("CARGO_BIN_EXE_greeter"), &all)
}

#[test]
fn curl_as_in_go_micros_readme() {
    let greeter = spawn(&[]);
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
    let greeter = spawn(&[]);
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
    let mut greeter = spawn(&[("GREETER_GRACE_MS", "5000")]);
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
    let mut greeter = spawn(&[("GREETER_GRACE_MS", "300")]);
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
