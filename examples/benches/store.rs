//! Run with: cargo bench -p micro-examples --features store-backends --bench store
//!
//! Writes and reads per second through micro's store against the
//! backend's own client doing the same work, in one process and one run,
//! as ratios: the file store against raw redb, the Redis store against
//! redis-rs (`SET`/`GET`), the Postgres store against tokio-postgres (an
//! upsert and a select on a table of the same shape). The value is the same
//! small JSON document, encoded with serde on both sides. Redis and
//! Postgres are at `MICRO_TEST_REDIS` and `MICRO_TEST_POSTGRES`, NATS KV
//! (against async-nats's own KV `put`/`get`) at `MICRO_TEST_NATS_KV`
//! (defaults: the local servers, NATS on 4223); a row whose server is not
//! there is skipped, and says so. `BENCH_OPS` sets the operations per row (default 2000), run from 16
//! tasks for the servers and one for the file store.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use micro::store::{FileStore, NatsKvStore, PostgresStore, RedisStore, Scoped, Store};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Doc {
    id: u64,
    name: String,
    tags: Vec<String>,
}

fn doc(id: u64) -> Doc {
    Doc {
        id,
        name: format!("document number {id}"),
        tags: vec!["a".into(), "b".into()],
    }
}

/// Runs `op(i)` for `i` in `0..n` from `tasks` tasks; operations/s.
async fn rate<F, Fut>(n: u64, tasks: u64, op: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut i = t;
                while i < n {
                    op(i).await;
                    i += tasks;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn row(backend: &str, op: &str, micro: f64, raw: f64) {
    println!(
        "{backend:<10} {op:<6} {micro:>12.0} {raw:>12.0} {:>8.2}x",
        micro / raw
    );
}

async fn micro_rates(store: Arc<dyn Store>, scope: &str, n: u64, tasks: u64) -> (f64, f64) {
    let s = Scoped::new(store, scope).unwrap();
    let w = {
        let s = s.clone();
        rate(n, tasks, move |i| {
            let s = s.clone();
            async move {
                s.put(&format!("k{i}"), &doc(i)).await.unwrap();
            }
        })
        .await
    };
    let r = rate(n, tasks, move |i| {
        let s = s.clone();
        async move {
            let d: Doc = s.get(&format!("k{i}")).await.unwrap();
            assert_eq!(d.id, i);
        }
    })
    .await;
    (w, r)
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::var("BENCH_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    println!(
        "{:<10} {:<6} {:>12} {:>12} {:>9}",
        "backend", "op", "micro op/s", "raw op/s", "ratio"
    );
    file(n).await;
    redis(n).await;
    postgres(n).await;
    nats(n).await;
}

async fn nats(n: u64) {
    let url =
        std::env::var("MICRO_TEST_NATS_KV").unwrap_or_else(|_| "nats://127.0.0.1:4223".into());
    let Ok(client) = async_nats::connect(url.as_str()).await else {
        println!("nats kv: skipped, no server at {url}");
        return;
    };
    let scope = format!("bench-{}", std::process::id());
    let store: Arc<dyn Store> = Arc::new(NatsKvStore::new(url.clone()));
    let (mw, mr) = micro_rates(store, &scope, n, 16).await;
    let js = async_nats::jetstream::new(client);
    let bucket_name = format!("micro-bench-raw-{}", std::process::id());
    let kv = js
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: bucket_name.clone(),
            history: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let w = {
        let kv = kv.clone();
        rate(n, 16, move |i| {
            let kv = kv.clone();
            async move {
                let value = serde_json::to_vec(&doc(i)).unwrap();
                kv.put(format!("k{i}"), value.into()).await.unwrap();
            }
        })
        .await
    };
    let r = {
        let kv = kv.clone();
        rate(n, 16, move |i| {
            let kv = kv.clone();
            async move {
                let value = kv.get(format!("k{i}")).await.unwrap().unwrap();
                let d: Doc = serde_json::from_slice(&value).unwrap();
                assert_eq!(d.id, i);
            }
        })
        .await
    };
    row("nats kv", "write", mw, w);
    row("nats kv", "read", mr, r);
    let _ = js.delete_key_value(&bucket_name).await;
    let _ = js.delete_key_value(format!("micro-store-{scope}")).await;
}

async fn file(n: u64) {
    let dir = std::env::temp_dir().join(format!("micro-bench-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store: Arc<dyn Store> = Arc::new(FileStore::open(dir.join("micro")).unwrap());
    let (mw, mr) = micro_rates(store, "bench", n, 1).await;

    let db = Arc::new(redb::Database::create(dir.join("raw.redb")).unwrap());
    const TABLE: redb::TableDefinition<'_, &str, &[u8]> = redb::TableDefinition::new("raw");
    let w = {
        let db = db.clone();
        rate(n, 1, move |i| {
            let db = db.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    let value = serde_json::to_vec(&doc(i)).unwrap();
                    let txn = db.begin_write().unwrap();
                    txn.open_table(TABLE)
                        .unwrap()
                        .insert(format!("k{i}").as_str(), value.as_slice())
                        .unwrap();
                    txn.commit().unwrap();
                })
                .await
                .unwrap();
            }
        })
        .await
    };
    let r = rate(n, 1, move |i| {
        let db = db.clone();
        async move {
            let txn = db.begin_read().unwrap();
            let table = txn.open_table(TABLE).unwrap();
            let value = table.get(format!("k{i}").as_str()).unwrap().unwrap();
            let d: Doc = serde_json::from_slice(value.value()).unwrap();
            assert_eq!(d.id, i);
        }
    })
    .await;
    row("file", "write", mw, w);
    row("file", "read", mr, r);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn redis(n: u64) {
    let url = std::env::var("MICRO_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let Ok(client) = redis::Client::open(url.as_str()) else {
        println!("redis: skipped, bad URL {url}");
        return;
    };
    let Ok(conn) = client.get_connection_manager().await else {
        println!("redis: skipped, no server at {url}");
        return;
    };
    let scope = format!("bench-{}", std::process::id());
    let store: Arc<dyn Store> = Arc::new(RedisStore::new(&url).unwrap());
    let (mw, mr) = micro_rates(store, &scope, n, 16).await;
    let prefix = format!("micro-bench-raw:{scope}:");
    let w = {
        let (conn, prefix) = (conn.clone(), prefix.clone());
        rate(n, 16, move |i| {
            let (mut conn, key) = (conn.clone(), format!("{prefix}k{i}"));
            async move {
                let value = serde_json::to_vec(&doc(i)).unwrap();
                let () = redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
        })
        .await
    };
    let r = {
        let (conn, prefix) = (conn.clone(), prefix.clone());
        rate(n, 16, move |i| {
            let (mut conn, key) = (conn.clone(), format!("{prefix}k{i}"));
            async move {
                let value: Vec<u8> = redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                let d: Doc = serde_json::from_slice(&value).unwrap();
                assert_eq!(d.id, i);
            }
        })
        .await
    };
    row("redis", "write", mw, w);
    row("redis", "read", mr, r);
    // Only this run's keys, by name: never FLUSHALL or KEYS.
    let mut conn = conn;
    for i in 0..n {
        let _: Result<(), _> = redis::cmd("DEL")
            .arg(format!("{prefix}k{i}"))
            .query_async(&mut conn)
            .await;
        for key in [format!("micro:store:{scope}:r:k{i}")] {
            let _: Result<(), _> = redis::cmd("DEL").arg(key).query_async(&mut conn).await;
        }
    }
    let _: Result<(), _> = redis::cmd("DEL")
        .arg(format!("micro:store:{scope}:index"))
        .query_async(&mut conn)
        .await;
    let _: Result<(), _> = redis::cmd("SREM")
        .arg("micro:store:scopes")
        .arg(&scope)
        .query_async(&mut conn)
        .await;
}

async fn postgres(n: u64) {
    let url = std::env::var("MICRO_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let Ok((client, connection)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await
    else {
        println!("postgres: skipped, no server at {url}");
        return;
    };
    tokio::spawn(connection);
    let scope = format!("bench-{}", std::process::id());
    let store: Arc<dyn Store> = Arc::new(PostgresStore::new(&url).unwrap());
    let (mw, mr) = micro_rates(store, &scope, n, 16).await;

    // The same shape of table, the same statements a hand-written store
    // would use, prepared once, on one pipelined connection.
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS micro_bench_raw (k BYTEA PRIMARY KEY, v BYTEA NOT NULL, version BIGINT NOT NULL)",
        )
        .await
        .unwrap();
    let client = Arc::new(client);
    let upsert = client
        .prepare("INSERT INTO micro_bench_raw (k, v, version) VALUES ($1, $2, 1) ON CONFLICT (k) DO UPDATE SET v = $2, version = micro_bench_raw.version + 1 RETURNING version")
        .await
        .unwrap();
    let select = client
        .prepare("SELECT v, version FROM micro_bench_raw WHERE k = $1")
        .await
        .unwrap();
    let tag = scope.clone();
    let w = {
        let (client, tag) = (client.clone(), tag.clone());
        rate(n, 16, move |i| {
            let (client, upsert, key) = (client.clone(), upsert.clone(), format!("{tag}k{i}"));
            async move {
                let value = serde_json::to_vec(&doc(i)).unwrap();
                client
                    .query_one(&upsert, &[&key.as_bytes(), &value])
                    .await
                    .unwrap();
            }
        })
        .await
    };
    let r = {
        let (client, tag) = (client.clone(), tag.clone());
        rate(n, 16, move |i| {
            let (client, select, key) = (client.clone(), select.clone(), format!("{tag}k{i}"));
            async move {
                let row = client.query_one(&select, &[&key.as_bytes()]).await.unwrap();
                let d: Doc = serde_json::from_slice(row.get::<_, &[u8]>(0)).unwrap();
                assert_eq!(d.id, i);
            }
        })
        .await
    };
    row("postgres", "write", mw, w);
    row("postgres", "read", mr, r);
    let _ = client
        .execute("DROP TABLE IF EXISTS micro_bench_raw", &[])
        .await;
    let _ = client
        .execute("DELETE FROM micro_store WHERE scope = $1", &[&scope])
        .await;
}
