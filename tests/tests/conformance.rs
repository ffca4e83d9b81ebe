//! The conformance suites of `micro_tests::conformance`, one test per
//! backend.

use std::sync::Arc;

use micro::broker::{Broker, HttpBroker, MemoryBroker};
use micro::registry::{MdnsRegistry, MemoryRegistry, Registry};
use micro_tests::conformance;
use micro_tests::netns::isolated;

#[tokio::test]
async fn memory_registry() {
    conformance::registry(|| Arc::new(MemoryRegistry::new()), "memory", true).await;
}

#[test]
#[cfg_attr(
    not(micro_test_root),
    ignore = "needs root: it makes network namespaces for mDNS"
)]
fn mdns_registry() {
    isolated(|| async {
        conformance::registry(
            || Arc::new(MdnsRegistry::builder().interfaces(["lo"]).build()),
            "mdns",
            false,
        )
        .await;
    });
}

#[tokio::test]
async fn memory_broker() {
    // One broker for every side: in-process delivery.
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    conformance::broker(
        async || broker.clone(),
        "memory",
        conformance::BrokerTraits {
            reports_errors: true,
            synchronous: true,
        },
    )
    .await;
}

#[tokio::test]
async fn http_broker() {
    // Each side is a running service with a broker of its own, as a
    // process would be; publishers find subscribers in the shared
    // registry, which each service keeps current as it subscribes.
    let registry: Arc<dyn Registry> = Arc::new(MemoryRegistry::new());
    let services = std::sync::Mutex::new(Vec::new());
    conformance::broker(
        async || {
            let broker: Arc<dyn Broker> = Arc::new(HttpBroker::new(registry.clone()));
            let service = micro::Service::new("conformance-http")
                .address("127.0.0.1:0")
                .registry(registry.clone())
                .broker(broker.clone())
                .start()
                .await
                .expect("the service starts");
            services.lock().unwrap().push(service);
            broker
        },
        "conformance.http",
        conformance::BrokerTraits {
            reports_errors: true,
            synchronous: true,
        },
    )
    .await;
    for service in services.into_inner().unwrap() {
        service.stop().await.expect("stop");
    }
}

#[cfg(feature = "rabbitmq")]
#[tokio::test]
#[cfg_attr(
    not(micro_test_rabbitmq),
    ignore = "needs RabbitMQ: set MICRO_TEST_RABBITMQ=amqp://127.0.0.1:5672/%2f"
)]
async fn rabbitmq_broker() {
    server_broker("rabbitmq", "MICRO_TEST_RABBITMQ").await;
}

#[cfg(feature = "mqtt")]
#[tokio::test]
#[cfg_attr(
    not(micro_test_mqtt),
    ignore = "needs an MQTT 5 broker: set MICRO_TEST_MQTT=mqtt://127.0.0.1:1883"
)]
async fn mqtt_broker() {
    server_broker("mqtt", "MICRO_TEST_MQTT").await;
}

#[cfg(feature = "nats")]
#[tokio::test]
#[cfg_attr(
    not(micro_test_nats),
    ignore = "needs a NATS server: set MICRO_TEST_NATS=nats://127.0.0.1:4222"
)]
async fn nats_broker() {
    server_broker("nats", "MICRO_TEST_NATS").await;
}

/// The broker suite on a broker with a server: `MICRO_BROKER=<kind>` at
/// the URL in `variable`, each side a bundle of its own, as the variables
/// choose it. At most once as seen from the publisher: a subscriber's
/// error does not come back.
#[cfg(any(feature = "nats", feature = "rabbitmq", feature = "mqtt"))]
async fn server_broker(kind: &'static str, variable: &str) {
    let url = std::env::var(variable).unwrap_or_else(|_| panic!("{variable} names the server"));
    let prefix = format!("conformance.{}", std::process::id());
    conformance::broker(
        async || {
            let backends = micro::Backends::from_vars(|name| match name {
                "MICRO_REGISTRY" => Some("memory".to_owned()),
                "MICRO_BROKER" => Some(kind.to_owned()),
                "MICRO_BROKER_ADDRESS" => Some(url.clone()),
                _ => None,
            });
            assert_eq!(backends.broker().name(), kind);
            backends.broker().clone()
        },
        &prefix,
        conformance::BrokerTraits {
            reports_errors: false,
            synchronous: false,
        },
    )
    .await;
}

const STORE: conformance::StoreTraits = conformance::StoreTraits {
    watches: true,
    max_key: micro::store::MAX_KEY_LEN,
};

#[tokio::test]
async fn memory_store() {
    let store: Arc<dyn micro::store::Store> = Arc::new(micro::store::MemoryStore::new());
    conformance::store(async || store.clone(), "conformance", STORE).await;
}

#[tokio::test]
async fn file_store() {
    let dir = std::env::temp_dir().join(format!("micro-store-conformance-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store: Arc<dyn micro::store::Store> =
        Arc::new(micro::store::FileStore::open(&dir).expect("the file store opens"));
    conformance::store(async || store.clone(), "conformance", STORE).await;
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "redis")]
#[tokio::test]
#[cfg_attr(
    not(micro_test_redis),
    ignore = "needs a Redis server: set MICRO_TEST_REDIS=redis://127.0.0.1:6379"
)]
async fn redis_store() {
    let url = std::env::var("MICRO_TEST_REDIS").expect("MICRO_TEST_REDIS names the server");
    // Chosen as MICRO_STORE=redis chooses it; a scope of its own per run.
    let backends = micro::Backends::from_vars(|name| match name {
        "MICRO_REGISTRY" | "MICRO_BROKER" => Some("memory".to_owned()),
        "MICRO_STORE" => Some("redis".to_owned()),
        "MICRO_STORE_ADDRESS" => Some(url.clone()),
        _ => None,
    });
    assert_eq!(backends.store().name(), "redis");
    let store = backends.store().clone();
    let prefix = format!("conformance-{}-{}", std::process::id(), rand_suffix());
    conformance::store(async || store.clone(), &prefix, STORE).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
#[cfg_attr(
    not(micro_test_redis),
    ignore = "needs a Redis server: set MICRO_TEST_REDIS=redis://127.0.0.1:6379"
)]
async fn redis_events() {
    let url = std::env::var("MICRO_TEST_REDIS").expect("MICRO_TEST_REDIS names the server");
    let backends = micro::Backends::from_vars(|name| match name {
        "MICRO_REGISTRY" | "MICRO_BROKER" => Some("memory".to_owned()),
        "MICRO_EVENTS" => Some("redis".to_owned()),
        "MICRO_EVENTS_ADDRESS" => Some(url.clone()),
        _ => None,
    });
    assert_eq!(backends.events().name(), "redis");
    let events = backends.events().clone();
    let prefix = format!("conformance-{}-{}", std::process::id(), rand_suffix());
    conformance::events(async || events.clone(), &prefix).await;

    // A group is a consumer group of the topic's stream, kept on the server.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let groups: redis::Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(format!("micro:events:{{{prefix}.groups}}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let text = format!("{groups:?}");
    assert!(text.contains("workers") && text.contains("audit"), "{text}");
    // A server that lost its scripts (a restart, SCRIPT FLUSH) is given
    // them again.
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let topics = micro::events::Topics::new(events.clone());
    let t = format!("{prefix}.flushed");
    let first = topics.publish_with_id(&t, "once", &1).await.unwrap();
    let again = topics.publish_with_id(&t, "once", &1).await.unwrap();
    assert!(!first.duplicate && again.duplicate && again.sequence == first.sequence);
    // The run's keys, so that the server does not grow run by run.
    let deleted =
        micro_tests::delete_redis_keys(&mut conn, &format!("micro:events:{{{prefix}.*")).await;
    assert!(deleted >= 10, "{deleted} keys");
}

/// A few characters that differ from run to run.
#[cfg(any(
    feature = "redis",
    feature = "postgres",
    feature = "nats",
    feature = "etcd"
))]
fn rand_suffix() -> String {
    use std::hash::{BuildHasher, RandomState};
    format!(
        "{:x}",
        RandomState::new().hash_one(std::time::SystemTime::now()) & 0xffff_ffff
    )
}

#[cfg(feature = "postgres")]
#[tokio::test]
#[cfg_attr(
    not(micro_test_postgres),
    ignore = "needs a Postgres server: set MICRO_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test"
)]
async fn postgres_store() {
    let url = std::env::var("MICRO_TEST_POSTGRES").expect("MICRO_TEST_POSTGRES names the server");
    let backends = micro::Backends::from_vars(|name| match name {
        "MICRO_REGISTRY" | "MICRO_BROKER" => Some("memory".to_owned()),
        "MICRO_STORE" => Some("postgres".to_owned()),
        "MICRO_STORE_ADDRESS" => Some(url.clone()),
        _ => None,
    });
    assert_eq!(backends.store().name(), "postgres");
    let store = backends.store().clone();
    let prefix = format!("conformance-{}-{}", std::process::id(), rand_suffix());
    conformance::store(async || store.clone(), &prefix, STORE).await;
}

#[cfg(feature = "nats")]
#[tokio::test]
#[cfg_attr(
    not(micro_test_nats_kv),
    ignore = "needs a NATS server with JetStream KV (2.10+): set MICRO_TEST_NATS_KV=nats://127.0.0.1:4223"
)]
async fn nats_kv_store() {
    let url = std::env::var("MICRO_TEST_NATS_KV").expect("MICRO_TEST_NATS_KV names the server");
    let backends = micro::Backends::from_vars(|name| match name {
        "MICRO_REGISTRY" | "MICRO_BROKER" => Some("memory".to_owned()),
        "MICRO_STORE" => Some("nats".to_owned()),
        "MICRO_STORE_ADDRESS" => Some(url.clone()),
        _ => None,
    });
    assert_eq!(backends.store().name(), "nats");
    let store = backends.store().clone();
    let prefix = format!("conformance-{}-{}", std::process::id(), rand_suffix());
    conformance::store(async || store.clone(), &prefix, STORE).await;
}

/// The locks of kind `kind` at `url`, chosen as a service chooses them
/// (`MICRO_SYNC`, `MICRO_SYNC_ADDRESS`; the other parts in memory), and a
/// prefix that keeps this run's lock names apart.
#[cfg(any(
    feature = "redis",
    feature = "postgres",
    feature = "nats",
    feature = "etcd"
))]
fn sync_on(kind: &str, url: &str) -> (Arc<dyn micro::sync::Locks>, String) {
    let backends = micro::Backends::from_vars(|name| match name {
        "MICRO_REGISTRY" | "MICRO_BROKER" => Some("memory".to_owned()),
        "MICRO_SYNC" => Some(kind.to_owned()),
        "MICRO_SYNC_ADDRESS" => Some(url.to_owned()),
        _ => None,
    });
    assert_eq!(backends.sync().name(), kind);
    let prefix = format!("conformance-{}-{}", std::process::id(), rand_suffix());
    (backends.sync().clone(), prefix)
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_sync() {
    conformance::sync(Arc::new(micro::sync::MemoryLocks::new()), "conformance").await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(micro_test_redis),
    ignore = "needs a Redis server: set MICRO_TEST_REDIS=redis://127.0.0.1:6379"
)]
async fn redis_sync() {
    let url = std::env::var("MICRO_TEST_REDIS").expect("MICRO_TEST_REDIS names the server");
    let (locks, prefix) = sync_on("redis", &url);
    conformance::sync(locks.clone(), &prefix).await;

    // A held lock is a key Redis expires; its tokens a counter beside it.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let locker = micro::sync::Locker::new(locks);
    let name = format!("{prefix}.keys");
    let lock = locker
        .try_lock(&name, std::time::Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    let key = format!("micro:sync:{{{name}}}");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 5000, "{ttl}");
    let fence: u64 = redis::cmd("GET")
        .arg(format!("{key}:fence"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(fence, lock.fence());
    lock.unlock().await.unwrap();
    let mut deleted = 0;
    for pattern in ["micro:sync:{", "micro:sync:{election:"] {
        deleted += micro_tests::delete_redis_keys(&mut conn, &format!("{pattern}{prefix}.*")).await;
    }
    assert!(deleted > 0);
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(micro_test_postgres),
    ignore = "needs a Postgres server: set MICRO_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test"
)]
async fn postgres_sync() {
    let url = std::env::var("MICRO_TEST_POSTGRES").expect("MICRO_TEST_POSTGRES names the server");
    let (locks, prefix) = sync_on("postgres", &url);
    conformance::sync(locks.clone(), &prefix).await;
    // A lock is a row that keeps its last token; these are this run's.
    let deleted = micro_tests::postgres_execute(
        &url,
        "DELETE FROM micro_locks WHERE name LIKE $1 || '%' OR name LIKE 'election:' || $1 || '%'",
        &prefix,
    )
    .await;
    assert!(deleted >= 4, "{deleted}");
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(micro_test_nats_kv),
    ignore = "needs a NATS server with JetStream KV (2.10+): set MICRO_TEST_NATS_KV=nats://127.0.0.1:4223"
)]
async fn nats_sync() {
    let url = std::env::var("MICRO_TEST_NATS_KV").expect("MICRO_TEST_NATS_KV names the server");
    let (locks, prefix) = sync_on("nats", &url);
    conformance::sync(locks.clone(), &prefix).await;

    // A held lock is a key of the bucket, its token the key's revision.
    let locker = micro::sync::Locker::new(locks);
    let name = format!("{prefix}.keys");
    let lock = locker
        .try_lock(&name, std::time::Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    let client = async_nats::connect(url.as_str()).await.unwrap();
    let kv = async_nats::jetstream::new(client)
        .get_key_value("micro-sync")
        .await
        .unwrap();
    let key: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    let entry = kv.entry(&key).await.unwrap().expect("the lock's key");
    assert_eq!(entry.revision, lock.fence());
    lock.unlock().await.unwrap();
    for suffix in [".try", ".mutex", ".lease", ".keys"] {
        micro_tests::purge_nats_locks(&url, &format!("{prefix}{suffix}")).await;
    }
    micro_tests::purge_nats_locks(&url, &format!("election:{prefix}.leader")).await;
}

#[tokio::test]
async fn memory_events() {
    let events: Arc<dyn micro::events::Events> = Arc::new(micro::events::MemoryEvents::new());
    conformance::events(async || events.clone(), "conformance").await;
}

#[cfg(feature = "nats")]
#[tokio::test]
#[cfg_attr(
    not(micro_test_nats),
    ignore = "needs a NATS server with JetStream: set MICRO_TEST_NATS=nats://127.0.0.1:4222"
)]
async fn nats_events() {
    let url = std::env::var("MICRO_TEST_NATS").expect("MICRO_TEST_NATS names the server");
    let backends = micro::Backends::from_vars(|name| match name {
        "MICRO_REGISTRY" | "MICRO_BROKER" => Some("memory".to_owned()),
        "MICRO_EVENTS" => Some("nats".to_owned()),
        "MICRO_EVENTS_ADDRESS" => Some(url.clone()),
        _ => None,
    });
    assert_eq!(backends.events().name(), "nats");
    let events = backends.events().clone();
    let prefix = format!("conformance-{}-{}", std::process::id(), rand_suffix());
    conformance::events(async || events.clone(), &prefix).await;
    // The run's durable consumers, which would otherwise stay on the
    // server: every one's name holds the prefix.
    let client = async_nats::connect(url.as_str()).await.unwrap();
    let stream = async_nats::jetstream::new(client)
        .get_stream("MICRO_EVENTS")
        .await
        .unwrap();
    use futures_util::StreamExt;
    let names: Vec<String> = stream
        .consumer_names()
        .filter_map(|n| std::future::ready(n.ok()))
        .collect()
        .await;
    let ours: Vec<&String> = names.iter().filter(|n| n.contains(&prefix)).collect();
    assert!(
        ours.len() >= 10,
        "durable consumers named by group: {ours:?}"
    );
    for name in ours {
        stream.delete_consumer(name).await.unwrap();
    }
    // And the run's events, so that the server does not grow run by run.
    stream
        .purge()
        .filter(format!("micro.events.{prefix}.>"))
        .await
        .unwrap();
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(micro_test_nats_kv),
    ignore = "needs a NATS server with per-key TTLs (2.11+): set MICRO_TEST_NATS_KV=nats://127.0.0.1:4223"
)]
async fn nats_registry() {
    let url = std::env::var("MICRO_TEST_NATS_KV").expect("MICRO_TEST_NATS_KV names the server");
    let backends = micro::Backends::from_vars(|name| match name {
        "MICRO_REGISTRY" => Some("nats".to_owned()),
        "MICRO_REGISTRY_ADDRESS" => Some(url.clone()),
        "MICRO_BROKER" => Some("memory".to_owned()),
        _ => None,
    });
    assert_eq!(backends.registry().name(), "nats");
    let registry = backends.registry().clone();
    let prefix = format!("conformance-{}-{}", std::process::id(), rand_suffix());
    conformance::registry(|| registry.clone(), &prefix, true).await;
}

#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(micro_test_etcd),
    ignore = "needs an etcd server: set MICRO_TEST_ETCD=http://127.0.0.1:2379"
)]
async fn etcd_sync() {
    let url = std::env::var("MICRO_TEST_ETCD").expect("MICRO_TEST_ETCD names the server");
    let (locks, prefix) = sync_on("etcd", &url);
    conformance::sync(locks.clone(), &prefix).await;

    // A held lock is a key, its token the revision of the write that
    // took it; released, the key is gone.
    let locker = micro::sync::Locker::new(locks);
    let name = format!("{prefix}.keys");
    let lock = locker
        .try_lock(&name, std::time::Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    let key = format!("micro/sync/{name}");
    let (value, revision) = etcd_get(&url, &key).await.expect("the lock's key");
    assert_eq!(revision, lock.fence(), "{value}");
    assert!(value.starts_with("- 5000 "), "{value}");
    lock.unlock().await.unwrap();
    assert!(
        etcd_get(&url, &key).await.is_none(),
        "released: the key is gone"
    );
    // The conformance suite's locks are released; its dead holder's lease
    // is taken over and released too. Whatever is left of this run goes.
    let prefix_key = format!("micro/sync/{prefix}");
    etcd_call(&url, "/v3/kv/deleterange", &prefix_range(&prefix_key)).await;
    let election = format!("micro/sync/election:{prefix}");
    etcd_call(&url, "/v3/kv/deleterange", &prefix_range(&election)).await;
}

/// POSTs `body` to etcd's JSON API at `url`; the reply.
#[cfg(feature = "etcd")]
async fn etcd_call(url: &str, path: &str, body: &serde_json::Value) -> serde_json::Value {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let request = http::Request::post(format!("{url}{path}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    let reply = client.request(request).await.expect("etcd answers");
    let bytes = reply.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).expect("etcd answers JSON")
}

/// The range of every key starting with `prefix`, as etcd's JSON API takes
/// it.
#[cfg(feature = "etcd")]
fn prefix_range(prefix: &str) -> serde_json::Value {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    serde_json::json!({ "key": b64.encode(prefix), "range_end": b64.encode(end) })
}

/// `key`'s value and the revision of its last write, read straight from
/// etcd.
#[cfg(feature = "etcd")]
async fn etcd_get(url: &str, key: &str) -> Option<(String, u64)> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let reply = etcd_call(
        url,
        "/v3/kv/range",
        &serde_json::json!({ "key": b64.encode(key) }),
    )
    .await;
    let kv = reply["kvs"].as_array()?.first()?.clone();
    let value = String::from_utf8(b64.decode(kv["value"].as_str()?).ok()?).ok()?;
    let revision = kv["mod_revision"].as_str()?.parse().ok()?;
    Some((value, revision))
}

#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(micro_test_etcd),
    ignore = "needs an etcd server: set MICRO_TEST_ETCD=http://127.0.0.1:2379"
)]
async fn etcd_registry() {
    let url = std::env::var("MICRO_TEST_ETCD").expect("MICRO_TEST_ETCD names the server");
    let backends = micro::Backends::from_vars(|name| match name {
        "MICRO_REGISTRY" => Some("etcd".to_owned()),
        "MICRO_REGISTRY_ADDRESS" => Some(url.clone()),
        "MICRO_BROKER" => Some("memory".to_owned()),
        _ => None,
    });
    assert_eq!(backends.registry().name(), "etcd");
    let registry = backends.registry().clone();
    let prefix = format!("conformance-{}-{}", std::process::id(), rand_suffix());
    conformance::registry(|| registry.clone(), &prefix, true).await;
}
