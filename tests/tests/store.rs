//! The store in a service and across processes: a handler's own scope, a
//! backend that is down, and the file store's durability and its one
//! process at a time.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use micro::store::{FileStore, MemoryStore, Scoped, Store, Unavailable};
use micro::{Backends, Context, Result, handler, service};
use micro_tests::{Greeter, GreeterClient, Hello};

/// Counts calls in its service's store.
struct Counter;

#[service]
impl Counter {
    /// `Counter.Incr`: adds one to the count and returns it.
    #[handler]
    async fn incr(&self, ctx: Context) -> Result<u64> {
        ctx.store()?
            .update("count", |n: Option<u64>| n.unwrap_or(0) + 1)
            .await
    }
}

async fn start(name: &str, store: Arc<dyn Store>) -> micro::ServiceHandle {
    micro::Service::new(name)
        .address("127.0.0.1:0")
        .backends(&Backends::memory().with_store(store))
        .handle(Counter)
        .handle(Greeter)
        .start()
        .await
        .expect("the service starts")
}

#[tokio::test]
async fn a_handler_keeps_state_in_its_services_own_scope() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let a = start("counter-a", store.clone()).await;
    let b = start("counter-b", store.clone()).await;
    let call = |svc: &micro::ServiceHandle| {
        let client = CounterClient::new(
            svc.record().name.clone(),
            micro::Client::builder()
                .backends(&Backends::memory())
                .build(),
        );
        let opts = micro::client::CallOptions::new().address(svc.local_addr().to_string());
        async move { client.incr_with(opts).await }
    };
    assert_eq!(call(&a).await.unwrap(), 1);
    assert_eq!(call(&a).await.unwrap(), 2);
    assert_eq!(
        call(&b).await.unwrap(),
        1,
        "another service has its own scope"
    );
    // The scope is the service's name: reachable explicitly.
    let shared = Scoped::new(store, "counter-a").unwrap();
    assert_eq!(shared.get::<u64>("count").await.unwrap(), 2);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn a_store_that_is_down_is_a_503_naming_it_and_the_rest_still_serves() {
    let down: Arc<dyn Store> = Arc::new(Unavailable::new("postgres", "connection refused"));
    let svc = start("counter-down", down).await;
    let opts = || micro::client::CallOptions::new().address(svc.local_addr().to_string());
    let client = micro::Client::builder()
        .backends(&Backends::memory())
        .build();
    let err = CounterClient::new("counter-down", client.clone())
        .incr_with(opts())
        .await
        .unwrap_err();
    assert_eq!(err.code(), 503, "{err}");
    assert!(err.detail().contains("postgres"), "{err}");
    let hello = GreeterClient::new("counter-down", client)
        .hello_with(Hello { name: "x".into() }, opts())
        .await
        .expect("an endpoint without the store still serves");
    assert_eq!(hello.message, "Hello x");
    svc.stop().await.unwrap();
}

#[test]
fn a_context_outside_a_service_has_no_store() {
    let err = Context::new().store().unwrap_err();
    assert_eq!(err.code(), 500);
}

#[tokio::test]
async fn the_file_store_keeps_every_acknowledged_write_across_kill_9() {
    let dir = std::env::temp_dir().join(format!("micro-store-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_store_writer"))
        .arg(&dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the writer starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "open");
    let mut acked = Vec::new();
    while acked.len() < 40 {
        let line = lines.next().expect("the writer goes on").unwrap();
        acked.push(line.strip_prefix("acked ").unwrap().parse::<u64>().unwrap());
    }

    // While it runs, a second process (this one) is refused at once.
    let err = FileStore::open(&dir).expect_err("one process at a time");
    assert!(err.to_string().contains("another process"), "{err}");
    assert_eq!(micro::Error::from(err).code(), 503);

    child.kill().unwrap();
    child.wait().unwrap();
    // Whatever it printed before it died was acknowledged.
    acked.extend(
        lines
            .map_while(std::result::Result::ok)
            .filter_map(|l| l.strip_prefix("acked ")?.parse::<u64>().ok()),
    );

    let records = Scoped::new(Arc::new(FileStore::open(&dir).expect("reopens")), "writer").unwrap();
    for i in &acked {
        let value: u64 = records
            .get(&format!("k{i:06}"))
            .await
            .unwrap_or_else(|e| panic!("acknowledged write {i} lost: {e}"));
        assert_eq!(value, *i);
    }
    let keys = records.keys("k").await.unwrap();
    assert!(keys.len() >= acked.len());
    drop(records);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_file_store_is_chosen_by_the_environment_and_keeps_data_across_a_restart() {
    let dir = std::env::temp_dir().join(format!("micro-store-env-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let vars = |dir: String| {
        move |name: &str| match name {
            "MICRO_REGISTRY" | "MICRO_BROKER" => Some("memory".to_owned()),
            "MICRO_STORE" => Some("file".to_owned()),
            "MICRO_STORE_ADDRESS" => Some(dir.clone()),
            _ => None,
        }
    };
    let path = dir.to_string_lossy().into_owned();
    {
        let backends = Backends::from_vars(vars(path.clone()));
        assert_eq!(backends.store().name(), "file");
        let s = Scoped::new(backends.store().clone(), "app").unwrap();
        s.put("kept", &"across restarts").await.unwrap();
        // A second bundle on the same directory cannot open it: every call
        // says why.
        let second = Backends::from_vars(vars(path.clone()));
        let err = Scoped::new(second.store().clone(), "app")
            .unwrap()
            .get::<String>("kept")
            .await
            .unwrap_err();
        assert_eq!(err.code(), 503, "{err}");
    }
    let backends = Backends::from_vars(vars(path));
    let s = Scoped::new(backends.store().clone(), "app").unwrap();
    assert_eq!(s.get::<String>("kept").await.unwrap(), "across restarts");
    drop((s, backends));
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_redis_store_that_cannot_be_reached_is_a_503_naming_redis() {
    // Nothing listens on port 1 of loopback.
    let store: Arc<dyn Store> =
        Arc::new(micro::store::RedisStore::new("redis://127.0.0.1:1").unwrap());
    let err = Scoped::new(store, "down")
        .unwrap()
        .get::<u64>("k")
        .await
        .unwrap_err();
    assert_eq!(err.code(), 503, "{err}");
    assert!(
        err.detail().contains("redis at redis://127.0.0.1:1"),
        "{err}"
    );
}

#[cfg(feature = "postgres")]
#[tokio::test]
#[cfg_attr(
    not(micro_test_postgres),
    ignore = "needs a Postgres server: set MICRO_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test"
)]
async fn a_postgres_watch_sees_other_connections_writes_and_says_when_its_connection_is_lost() {
    use futures_util::StreamExt;
    use micro::store::{Change, PostgresStore};

    let url = std::env::var("MICRO_TEST_POSTGRES").expect("MICRO_TEST_POSTGRES names the server");
    // The watching store is named, so that its connections can be found
    // and cut below.
    let name = format!("micro-watch-test-{}", std::process::id());
    let sep = if url.contains('?') { '&' } else { '?' };
    let watcher: Arc<dyn Store> =
        Arc::new(PostgresStore::new(&format!("{url}{sep}application_name={name}")).unwrap());
    let writer: Arc<dyn Store> = Arc::new(PostgresStore::new(&url).unwrap());
    let scope = format!("watch-{}", std::process::id());
    let watching = Scoped::new(watcher, &scope).unwrap();
    let writing = Scoped::new(writer, &scope).unwrap();
    let _ = writing.delete("k").await;

    let mut watch = watching.watch("").await.expect("postgres watches");
    writing.put("k", &"from another pool").await.unwrap();
    match next_change(&mut watch).await.expect("a change") {
        Change::Put(r) => assert_eq!(
            (r.key.as_str(), r.value.as_ref()),
            ("k", &b"\"from another pool\""[..])
        ),
        other => panic!("unexpected {other:?}"),
    }

    // The server ends the listening connection: the watch says so, as a
    // 503, rather than going quiet.
    let cut = Command::new("psql")
        .arg(&url)
        .arg("-Atc")
        .arg(format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = '{name}' AND pid IN (SELECT pid FROM micro_store_listeners)"
        ))
        .output()
        .expect("psql runs");
    assert!(
        cut.status.success(),
        "{}",
        String::from_utf8_lossy(&cut.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&cut.stdout).trim(),
        "1",
        "one listener"
    );
    let err = next_change(&mut watch)
        .await
        .expect_err("the loss is reported");
    assert!(
        matches!(&err, micro::store::StoreError::Unavailable(m) if m.contains("watch again")),
        "{err}"
    );
    assert!(
        tokio::time::timeout(std::time::Duration::from_secs(5), watch.next())
            .await
            .expect("the watch ends")
            .is_none()
    );

    // Watching again works, and the store kept serving throughout.
    let mut watch = watching.watch("").await.expect("a new watch");
    writing.put("k", &"again").await.unwrap();
    match next_change(&mut watch).await.expect("a change") {
        Change::Put(r) => assert_eq!(r.version, 2),
        other => panic!("unexpected {other:?}"),
    }
    writing.delete("k").await.unwrap();
}

#[cfg(feature = "postgres")]
async fn next_change(
    watch: &mut micro::store::Watch,
) -> std::result::Result<micro::store::Change, micro::store::StoreError> {
    use futures_util::StreamExt;
    tokio::time::timeout(std::time::Duration::from_secs(5), watch.next())
        .await
        .expect("within 5 s")
        .expect("the watch goes on")
}
