//! The `micro` binary against real running services: each test that uses
//! mDNS runs in a network namespace of its own (it needs root), with the
//! service in this process and the CLI as a child process.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use micro_tests::Greeter;
use micro_tests::netns::isolated;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const MICRO: &str = env!("CARGO_BIN_EXE_micro");

/// The CLI with `args`, on mDNS, everything else in its own process.
fn micro(args: &[&str]) -> Command {
    let mut cmd = Command::new(MICRO);
    cmd.args(args)
        .env("MICRO_REGISTRY", "mdns")
        .env_remove("MICRO_PROFILE")
        .env_remove("MICRO_BROKER")
        .env_remove("MICRO_STORE")
        .env_remove("MICRO_EVENTS")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn run(args: &[&str]) -> Output {
    micro(args).output().await.expect("micro runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The greeter test service on loopback, registered with mDNS.
async fn greeter() -> micro::ServiceHandle {
    micro::Service::new("greeter")
        .address("127.0.0.1:0")
        .registry(std::sync::Arc::new(micro::registry::MdnsRegistry::new()))
        .handle(Greeter)
        .start()
        .await
        .expect("the greeter starts")
}

#[test]
#[cfg_attr(
    not(micro_test_root),
    ignore = "needs root: it makes a network namespace for mDNS"
)]
fn services_describe_call_and_health() {
    isolated(|| async {
        let running = greeter().await;
        let addr = running.local_addr().to_string();

        // Found by name: the table, and the JSON.
        let out = run(&["services"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        let table = stdout(&out);
        assert!(table.starts_with("SERVICE"), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["greeter", "latest", "1"]),
            "{table}"
        );
        let listed: serde_json::Value =
            serde_json::from_slice(&run(&["--json", "services"]).await.stdout).unwrap();
        assert!(
            listed
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["name"] == "greeter" && s["nodes"] == 1),
            "{listed}"
        );

        // Endpoints and nodes.
        let out = run(&["describe", "greeter"]).await;
        let text = stdout(&out);
        assert!(
            text.contains("Greeter.Hello") && text.contains("Greeter.Talk"),
            "{text}"
        );
        assert!(text.contains("stream (bidirectional)"), "{text}");
        assert!(text.contains(&addr), "{text}");
        let described: serde_json::Value =
            serde_json::from_slice(&run(&["describe", "greeter", "--json"]).await.stdout).unwrap();
        assert_eq!(described[0]["nodes"][0]["address"], addr.as_str());

        // Calls: by name, with metadata, MessagePack, from stdin, by address.
        let out = run(&["call", "greeter", "Greeter.Hello", r#"{"name": "alice"}"#]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(reply["message"], "Hello alice");
        let out = run(&[
            "call",
            "greeter",
            "Greeter.Whoami",
            "-m",
            "x-user=carol",
            "--timeout",
            "3s",
        ])
        .await;
        let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(seen["user"], "carol");
        assert!(seen["remaining_ms"].as_u64().unwrap() <= 3000, "{seen}");
        let out = run(&[
            "call",
            "greeter",
            "Greeter.Hello",
            r#"{"name": "bob"}"#,
            "--msgpack",
        ])
        .await;
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["message"],
            "Hello bob"
        );
        let mut child = micro(&["call", "greeter", "Greeter.Echo", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(br#""from stdin""#)
            .await
            .unwrap();
        let out = child.wait_with_output().await.unwrap();
        assert_eq!(stdout(&out).trim(), r#""from stdin""#);
        let out = run(&[
            "call",
            "anything",
            "Greeter.Hello",
            r#"{"name": "dave"}"#,
            "--address",
            &addr,
        ])
        .await;
        assert!(out.status.success(), "{}", stderr(&out));

        // Failures: the detail on stderr, and an exit code per kind.
        let out = run(&[
            "call",
            "greeter",
            "Greeter.Fail",
            r#"{"code": 409, "detail": "taken"}"#,
        ])
        .await;
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(stderr(&out).trim(), "micro: taken (409 Conflict)");
        let out = run(&["call", "greeter", "Greeter.Hello", "{not json"]).await;
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr(&out).contains("the request is not JSON"),
            "{}",
            stderr(&out)
        );
        let out = run(&["call", "nobody", "Nobody.Home"]).await;
        assert_eq!(out.status.code(), Some(3));
        assert!(
            stderr(&out).contains("service \"nobody\" not found in registry"),
            "{}",
            stderr(&out)
        );
        let out = run(&[
            "call",
            "greeter",
            "Greeter.Slow",
            r#"{"ms": 2000}"#,
            "--timeout",
            "200ms",
        ])
        .await;
        assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));

        // The OpenAPI document, from a node.
        let out = run(&["openapi", "greeter"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["paths"]["/Greeter.Hello"]["post"].is_object(), "{doc}");

        // Health of every node.
        let out = run(&["health", "greeter"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stdout(&out)
                .lines()
                .any(|l| l.contains(&addr) && l.contains(" up")),
            "{}",
            stdout(&out)
        );
        let health: serde_json::Value =
            serde_json::from_slice(&run(&["health", "greeter", "--json"]).await.stdout).unwrap();
        assert_eq!(health[0]["status"], "up");

        running.stop().await.unwrap();
        let out = run(&["health", "greeter"]).await;
        assert_eq!(out.status.code(), Some(3), "a stopped service is not found");
    });
}

#[test]
#[cfg_attr(
    not(micro_test_root),
    ignore = "needs root: it makes a network namespace for mDNS"
)]
fn a_stream_from_stdin_to_stdout() {
    isolated(|| async {
        let running = greeter().await;
        let mut child = micro(&["stream", "greeter", "Greeter.Talk"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"\"one\"\n\n\"two\"\n").await.unwrap();
        drop(stdin);
        let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
            .await
            .expect("the stream ends once stdin does")
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let pid = std::process::id();
        assert_eq!(
            stdout(&out).lines().collect::<Vec<_>>(),
            [
                format!("\"{pid}\""),
                format!("\"{pid}: one\""),
                format!("\"{pid}: two\"")
            ]
        );
        running.stop().await.unwrap();
    });
}

#[test]
#[cfg_attr(
    not(micro_test_root),
    ignore = "needs root: it makes a network namespace for mDNS"
)]
fn publish_reaches_subscribe() {
    isolated(|| async {
        let mut subscriber = micro(&["subscribe", "news", "--count", "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Subscribed once the publisher's broker finds a subscriber.
        let started = Instant::now();
        loop {
            let out = run(&["publish", "news", r#"{"n": 0}"#, "--json"]).await;
            assert!(out.status.success(), "{}", stderr(&out));
            let published: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if published["delivered"] == 1 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the subscriber never took a message"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let out = run(&["publish", "news", r#"{"n": 1}"#]).await;
        assert!(
            stdout(&out).contains("1 subscribers took it"),
            "{}",
            stdout(&out)
        );
        let out = tokio::time::timeout(Duration::from_secs(20), async {
            subscriber.wait().await.unwrap();
            let mut text = String::new();
            tokio::io::AsyncReadExt::read_to_string(subscriber.stdout.as_mut().unwrap(), &mut text)
                .await
                .unwrap();
            text
        })
        .await
        .expect("the subscriber exits after two messages");
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            [r#"{"n":0}"#, r#"{"n":1}"#]
        );
    });
}

/// The store commands on the file store: each command opens it, so the
/// records outlive every process.
#[tokio::test]
async fn store_commands_on_the_file_store() {
    let dir = std::env::temp_dir().join(format!("micro-cli-store-{}", std::process::id()));
    let store = |args: &[&str]| {
        let mut cmd = micro(args);
        cmd.env("MICRO_REGISTRY", "memory")
            .env("MICRO_STORE", "file")
            .env("MICRO_STORE_ADDRESS", &dir);
        cmd
    };
    let ok = |out: &Output| assert!(out.status.success(), "{}", stderr(out));
    let out = store(&[
        "store",
        "write",
        "--scope",
        "todo",
        "a",
        r#"{"text": "milk"}"#,
    ])
    .output()
    .await
    .unwrap();
    ok(&out);
    assert_eq!(stdout(&out).trim(), "wrote a (version 1)");
    ok(
        &store(&["store", "write", "--scope", "todo", "b", "2", "--ttl", "1h"])
            .output()
            .await
            .unwrap(),
    );
    let out = store(&["store", "write", "--scope", "todo", "a", "3", "--if-absent"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "a conflict is a failure");
    assert!(stderr(&out).contains("409"), "{}", stderr(&out));
    let out = store(&["store", "read", "--scope", "todo", "a"])
        .output()
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["text"],
        "milk"
    );
    let out = store(&["store", "list", "--scope", "todo", "--json"])
        .output()
        .await
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["a", "b"]);
    assert!(listed[1]["expires_in_seconds"].as_u64().unwrap() > 3500);
    let out = store(&["store", "list", "--scope", "todo", "--after", "a"])
        .output()
        .await
        .unwrap();
    let table = stdout(&out);
    assert!(
        table.starts_with("KEY") && table.contains("\nb ") && !table.contains("\na "),
        "{table}"
    );
    ok(&store(&["store", "delete", "--scope", "todo", "a"])
        .output()
        .await
        .unwrap());
    let out = store(&["store", "read", "--scope", "todo", "a"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "gone: not found");
    let out = store(&["store", "read", "--scope", "not a scope", "a"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Events on NATS JetStream: published by one process, consumed by another.
#[cfg(feature = "nats")]
#[tokio::test]
#[cfg_attr(
    not(micro_test_nats),
    ignore = "needs a NATS server with JetStream: set MICRO_TEST_NATS=nats://127.0.0.1:4222"
)]
async fn events_publish_and_consume_on_nats() {
    let url = std::env::var("MICRO_TEST_NATS").unwrap();
    let topic = format!("cli.events.{}", std::process::id());
    let events = |args: &[&str]| {
        let mut cmd = micro(args);
        cmd.env("MICRO_REGISTRY", "memory")
            .env("MICRO_EVENTS", "nats")
            .env("MICRO_EVENTS_ADDRESS", &url);
        cmd
    };
    for n in 0..3 {
        let out = events(&[
            "events",
            "publish",
            &topic,
            &format!(r#"{{"n": {n}}}"#),
            "--json",
        ])
        .output()
        .await
        .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let stored: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(stored["sequence"].as_u64().unwrap() > 0);
    }
    let out = events(&["events", "publish", &topic, "{}", "--id", "once"])
        .output()
        .await
        .unwrap();
    assert!(stdout(&out).starts_with("stored once"), "{}", stdout(&out));
    let out = events(&["events", "publish", &topic, "{}", "--id", "once"])
        .output()
        .await
        .unwrap();
    assert!(
        stdout(&out).starts_with("already stored as once"),
        "{}",
        stdout(&out)
    );
    let group = format!("g{}", std::process::id());
    let consume = [
        "events",
        "consume",
        &topic,
        "--group",
        &group,
        "--start",
        "beginning",
        "--count",
        "3",
        "--ack-wait",
        "1s",
    ];
    let out = events(&consume).output().await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let got: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let payloads: Vec<&serde_json::Value> = got.iter().map(|e| &e["payload"]).collect();
    assert_eq!(
        payloads,
        [
            &serde_json::json!({"n": 0}),
            &serde_json::json!({"n": 1}),
            &serde_json::json!({"n": 2})
        ]
    );
    assert!(got.iter().all(|e| e["attempt"] == 1));
    // The group resumes after what it acked: only the deduplicated one is
    // left (once the ack wait has passed, if the first member had fetched
    // it without printing it).
    let mut rest = consume.to_vec();
    rest.extend(["--idle", "4s"]);
    let out = events(&rest).output().await.unwrap();
    let left: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(left.len(), 1, "{}", stdout(&out));
    assert_eq!(left[0]["id"], "once");
}

/// `micro new` makes a crate whose tests pass as generated.
#[test]
fn a_new_service_builds_and_its_tests_pass() {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir: PathBuf = target.join(format!("micro-new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = std::process::Command::new(MICRO)
        .args(["new", "order-desk", "--path"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("made the service order-desk"),
        "{}",
        stdout(&out)
    );
    // Again into the same place: refused.
    let again = std::process::Command::new(MICRO)
        .args(["new", "order-desk", "--path"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    let bad = std::process::Command::new(MICRO)
        .args(["new", "Bad Name"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));

    // The workspace's lock file, so that it builds offline with the same
    // versions, and the workspace's target directory, so that it reuses
    // what is built.
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock"),
        dir.join("Cargo.lock"),
    )
    .unwrap();
    let tested = std::process::Command::new(env!("CARGO"))
        .args(["test", "--offline", "--quiet"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", target.join("micro-new-target"))
        .env("MICRO_REGISTRY", "memory")
        .output()
        .unwrap();
    assert!(
        tested.status.success(),
        "cargo test in the new crate:\n{}\n{}",
        stdout(&tested),
        stderr(&tested)
    );
    assert!(
        stdout(&tested).contains("test tests::hello_greets_by_name ... ok")
            || stdout(&tested).contains("1 passed"),
        "{}",
        stdout(&tested)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `micro config` writes what a service's remote config source reads.
#[tokio::test]
async fn config_values_reach_a_remote_source() {
    let dir = std::env::temp_dir().join(format!("micro-cli-config-{}", std::process::id()));
    let config = |args: &[&str]| {
        let mut cmd = micro(args);
        cmd.env("MICRO_CONFIG", "file")
            .env("MICRO_CONFIG_ADDRESS", &dir);
        cmd
    };
    let out = config(&["config", "set", "greeter/greeting", r#""Hej""#])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = config(&["config", "set", "greeter/limit", "3"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = config(&["config", "get", "greeter/greeting"])
        .output()
        .await
        .unwrap();
    assert_eq!(stdout(&out).trim(), r#""Hej""#);
    let out = config(&["config", "list", "--prefix", "greeter/", "--json"])
        .output()
        .await
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    // Without MICRO_CONFIG: told what to set.
    let out = micro(&["config", "list"])
        .env_remove("MICRO_CONFIG")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("MICRO_CONFIG"), "{}", stderr(&out));

    // A service's config, on the same store, sees them as settings.
    let store: std::sync::Arc<dyn micro::store::Store> =
        std::sync::Arc::new(micro::store::FileStore::open(&dir).unwrap());
    let loaded = micro::config::Config::builder()
        .store(store, "config", "")
        .load()
        .await
        .unwrap();
    assert_eq!(loaded.get::<String>("greeter.greeting").unwrap(), "Hej");
    assert_eq!(loaded.get::<u32>("greeter.limit").unwrap(), 3);
    drop(loaded);
    let _ = std::fs::remove_dir_all(&dir);
}
