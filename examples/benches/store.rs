//! Run with: cargo bench -p micro-examples --features store-backends --bench store
//!
//! Writes and reads per second through micro's store against the
//! backend's own client doing the same work, in one process and one run,
//! as ratios:
//! - file: raw redb, one table, a write transaction per write;
//! - redis: redis-rs running the same server-side steps as micro's write
//!   (a Lua script: check the version, bump it, store the value, set or
//!   clear the expiry, index the key, publish the change for watchers), and
//!   beside it redis-rs storing the same shape without the check and the
//!   change (a versioned hash and a sorted-set index, in one `MULTI`) and
//!   bare `SET`/`GET`, both less work than a store with conditions,
//!   ordered listings and watches;
//! - postgres: tokio-postgres running micro's own statements (the upsert
//!   that bumps the version unless the record expired, the select that
//!   skips expired records) on micro's own table, with its watch trigger,
//!   in another scope; and beside it a prepared upsert with a version and
//!   a select on a table of a key, a value and a version, less work than
//!   a store with scopes, expiry, metadata and watches;
//! - nats kv: async-nats's own KV `put`/`get`.
//!
//! The value is the same small JSON document, encoded with serde on both
//! sides. Each row runs `ROUNDS` rounds, micro then raw, on fresh keys, and
//! reports each side's best round, so that a burst of load on the machine
//! does not land on one side only. Redis, Postgres and NATS KV are at
//! `MICRO_TEST_REDIS`, `MICRO_TEST_POSTGRES` and `MICRO_TEST_NATS_KV`
//! (defaults: the local servers, NATS on 4223); a row whose server is not
//! there is skipped, and says so. `BENCH_OPS` sets the operations per round
//! (default 2000), run from 16 tasks for the servers and one for the file
//! store.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use micro::store::{FileStore, NatsKvStore, PostgresStore, RedisStore, Scoped, Store};
use serde::{Deserialize, Serialize};

/// How many rounds each row runs.
const ROUNDS: u64 = 3;

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

type Op = Arc<dyn Fn(String, u64) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// One side of a row: how it writes and reads document `i` under a key.
struct Side {
    write: Op,
    read: Op,
}

fn op<F, Fut>(f: F) -> Op
where
    F: Fn(String, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move |key, i| Box::pin(f(key, i)))
}

/// Runs `op` on `n` keys of `round` from `tasks` tasks; operations/s.
async fn rate(op: &Op, round: u64, n: u64, tasks: u64) -> f64 {
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut i = t;
                while i < n {
                    op(format!("r{round}k{i}"), i).await;
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

/// Runs the rounds, micro and raw in turn, and prints the best of each.
async fn compare(backend: &str, n: u64, tasks: u64, micro: &Side, raws: &[(&str, Side)]) {
    let mut best = vec![(0f64, 0f64); raws.len() + 1];
    for round in 0..ROUNDS {
        let sides = std::iter::once(micro).chain(raws.iter().map(|(_, s)| s));
        for (side, best) in sides.zip(best.iter_mut()) {
            best.0 = best.0.max(rate(&side.write, round, n, tasks).await);
            best.1 = best.1.max(rate(&side.read, round, n, tasks).await);
        }
    }
    let (mw, mr) = best[0];
    for ((name, _), (w, r)) in raws.iter().zip(&best[1..]) {
        let label = if raws.len() > 1 {
            format!("{backend} vs {name}")
        } else {
            backend.to_owned()
        };
        println!(
            "{label:<24} write {mw:>9.0} {w:>9.0} {:>6.2}x   read {mr:>9.0} {r:>9.0} {:>6.2}x",
            mw / w,
            mr / r
        );
    }
}

fn micro_side(s: Scoped) -> Side {
    let w = s.clone();
    Side {
        write: op(move |key, i| {
            let s = w.clone();
            async move {
                s.put(&key, &doc(i)).await.unwrap();
            }
        }),
        read: op(move |key, i| {
            let s = s.clone();
            async move {
                let d: Doc = s.get(&key).await.unwrap();
                assert_eq!(d.id, i);
            }
        }),
    }
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::var("BENCH_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    println!(
        "{:<24} {:<5} {:>9} {:>9} {:>7}   {:<4} {:>9} {:>9} {:>7}",
        "backend", "", "micro/s", "raw/s", "ratio", "", "micro/s", "raw/s", "ratio"
    );
    file(n).await;
    redis(n).await;
    postgres(n).await;
    nats(n).await;
}

async fn file(n: u64) {
    let dir = std::env::temp_dir().join(format!("micro-bench-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store: Arc<dyn Store> = Arc::new(FileStore::open(dir.join("micro")).unwrap());
    let micro = micro_side(Scoped::new(store, "bench").unwrap());

    let db = Arc::new(redb::Database::create(dir.join("raw.redb")).unwrap());
    const TABLE: redb::TableDefinition<'_, &str, &[u8]> = redb::TableDefinition::new("raw");
    let written = db.clone();
    let raw = Side {
        write: op(move |key, i| {
            let db = written.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    let value = serde_json::to_vec(&doc(i)).unwrap();
                    let txn = db.begin_write().unwrap();
                    txn.open_table(TABLE)
                        .unwrap()
                        .insert(key.as_str(), value.as_slice())
                        .unwrap();
                    txn.commit().unwrap();
                })
                .await
                .unwrap();
            }
        }),
        read: op(move |key, i| {
            let db = db.clone();
            async move {
                let txn = db.begin_read().unwrap();
                let table = txn.open_table(TABLE).unwrap();
                let value = table.get(key.as_str()).unwrap().unwrap();
                let d: Doc = serde_json::from_slice(value.value()).unwrap();
                assert_eq!(d.id, i);
            }
        }),
    };
    compare("file", n, 1, &micro, &[("redb", raw)]).await;
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
    let micro = micro_side(Scoped::new(store, &scope).unwrap());
    let prefix = format!("micro-bench-raw:{scope}:");

    // What a hand-written store with versions and ordered listings does:
    // bump the version, store the value, index the key, atomically.
    let shaped = {
        let (w, r) = (
            (conn.clone(), prefix.clone()),
            (conn.clone(), prefix.clone()),
        );
        Side {
            write: op(move |key, i| {
                let (mut conn, prefix) = (w.0.clone(), w.1.clone());
                async move {
                    let value = serde_json::to_vec(&doc(i)).unwrap();
                    let (_added,): (i64,) = redis::pipe()
                        .atomic()
                        .cmd("HINCRBY")
                        .arg(format!("{prefix}h:{key}"))
                        .arg("ver")
                        .arg(1)
                        .ignore()
                        .cmd("HSET")
                        .arg(format!("{prefix}h:{key}"))
                        .arg("rec")
                        .arg(value)
                        .ignore()
                        .cmd("ZADD")
                        .arg(format!("{prefix}index"))
                        .arg(0)
                        .arg(&key)
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                }
            }),
            read: op(move |key, i| {
                let (mut conn, prefix) = (r.0.clone(), r.1.clone());
                async move {
                    let (_ver, value): (u64, Vec<u8>) = redis::cmd("HMGET")
                        .arg(format!("{prefix}h:{key}"))
                        .arg("ver")
                        .arg("rec")
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    let d: Doc = serde_json::from_slice(&value).unwrap();
                    assert_eq!(d.id, i);
                }
            }),
        }
    };
    // The same steps as micro's write, as one script, by hand.
    let script = Arc::new(redis::Script::new(
        r#"
local cur = redis.call('HGET', KEYS[1], 'ver')
local v = (cur and tonumber(cur) or 0) + 1
redis.call('HSET', KEYS[1], 'ver', v, 'rec', ARGV[1])
if cur then redis.call('PERSIST', KEYS[1]) end
redis.call('ZADD', KEYS[2], 0, ARGV[2])
redis.call('PUBLISH', KEYS[3], 'P' .. v .. ':' .. #ARGV[2] .. ':' .. ARGV[2] .. ARGV[1])
return {v, ''}
"#,
    ));
    let scripted = {
        let (w, r) = (
            (conn.clone(), prefix.clone(), script),
            (conn.clone(), prefix.clone()),
        );
        Side {
            write: op(move |key, i| {
                let (mut conn, prefix, script) = (w.0.clone(), w.1.clone(), w.2.clone());
                async move {
                    let value = serde_json::to_vec(&doc(i)).unwrap();
                    let (_v, _): (i64, String) = script
                        .key(format!("{prefix}h:{key}"))
                        .key(format!("{prefix}index"))
                        .key(format!("{prefix}changes"))
                        .arg(value)
                        .arg(&key)
                        .invoke_async(&mut conn)
                        .await
                        .unwrap();
                }
            }),
            read: op(move |key, i| {
                let (mut conn, prefix) = (r.0.clone(), r.1.clone());
                async move {
                    let value: Vec<u8> = redis::cmd("HGET")
                        .arg(format!("{prefix}h:{key}"))
                        .arg("rec")
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    let d: Doc = serde_json::from_slice(&value).unwrap();
                    assert_eq!(d.id, i);
                }
            }),
        }
    };
    let bare = {
        let (w, r) = (
            (conn.clone(), prefix.clone()),
            (conn.clone(), prefix.clone()),
        );
        Side {
            write: op(move |key, i| {
                let (mut conn, prefix) = (w.0.clone(), w.1.clone());
                async move {
                    let value = serde_json::to_vec(&doc(i)).unwrap();
                    let () = redis::cmd("SET")
                        .arg(format!("{prefix}s:{key}"))
                        .arg(value)
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                }
            }),
            read: op(move |key, i| {
                let (mut conn, prefix) = (r.0.clone(), r.1.clone());
                async move {
                    let value: Vec<u8> = redis::cmd("GET")
                        .arg(format!("{prefix}s:{key}"))
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    let d: Doc = serde_json::from_slice(&value).unwrap();
                    assert_eq!(d.id, i);
                }
            }),
        }
    };
    compare(
        "redis",
        n,
        16,
        &micro,
        &[
            ("same script", scripted),
            ("same shape", shaped),
            ("bare SET/GET", bare),
        ],
    )
    .await;
    // Only this run's keys, by name: never FLUSHALL or KEYS.
    let mut conn = conn;
    for round in 0..ROUNDS {
        for i in 0..n {
            let key = format!("r{round}k{i}");
            let _: Result<(), _> = redis::cmd("DEL")
                .arg(format!("{prefix}h:{key}"))
                .arg(format!("{prefix}s:{key}"))
                .arg(format!("micro:store:{scope}:r:{key}"))
                .query_async(&mut conn)
                .await;
        }
    }
    let _: Result<(), _> = redis::cmd("DEL")
        .arg(format!("micro:store:{scope}:index"))
        .arg(format!("{prefix}index"))
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
    let scoped = Scoped::new(store, &scope).unwrap();
    // The store makes its table on first use; the raw side uses it too.
    scoped.put("warm-up", &doc(0)).await.unwrap();
    let micro = micro_side(scoped);

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
    // micro's statements on micro's table (the store made it), as a
    // hand-written store with the same features would run them.
    let same_write = client
        .prepare(
            "INSERT INTO micro_store (scope, key, value, content_type, metadata, expires_at, version) \
             VALUES ($1, $2, $3, $4, $5, $6, 1) ON CONFLICT (scope, key) DO UPDATE SET \
             value = $3, content_type = $4, metadata = $5, expires_at = $6, \
             version = CASE WHEN (micro_store.expires_at IS NULL OR micro_store.expires_at > $7) \
             THEN micro_store.version + 1 ELSE 1 END RETURNING version",
        )
        .await
        .unwrap();
    let same_read = client
        .prepare(
            "SELECT key, value, content_type, metadata, expires_at, version FROM micro_store \
             WHERE scope = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > $3)",
        )
        .await
        .unwrap();
    let raw_scope = format!("{scope}-raw");
    let now_ms = || {
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap()
    };
    let (w, r) = (
        (client.clone(), raw_scope.clone()),
        (client.clone(), raw_scope.clone()),
    );
    let same = Side {
        write: op(move |key, i| {
            let (client, sql, scope) = (w.0.clone(), same_write.clone(), w.1.clone());
            async move {
                let value = serde_json::to_vec(&doc(i)).unwrap();
                let expires: Option<i64> = None;
                client
                    .query_one(
                        &sql,
                        &[
                            &scope,
                            &key.as_bytes(),
                            &value,
                            &"application/json",
                            &"",
                            &expires,
                            &now_ms(),
                        ],
                    )
                    .await
                    .unwrap();
            }
        }),
        read: op(move |key, i| {
            let (client, sql, scope) = (r.0.clone(), same_read.clone(), r.1.clone());
            async move {
                let row = client
                    .query_one(&sql, &[&scope, &key.as_bytes(), &now_ms()])
                    .await
                    .unwrap();
                let (_key, _ct, _md): (&[u8], &str, &str) = (row.get(0), row.get(2), row.get(3));
                let (_expires, _version): (Option<i64>, i64) = (row.get(4), row.get(5));
                let d: Doc = serde_json::from_slice(row.get::<_, &[u8]>(1)).unwrap();
                assert_eq!(d.id, i);
            }
        }),
    };
    let (w, r) = (
        (client.clone(), scope.clone()),
        (client.clone(), scope.clone()),
    );
    let raw = Side {
        write: op(move |key, i| {
            let (client, upsert, key) = (w.0.clone(), upsert.clone(), format!("{}{key}", w.1));
            async move {
                let value = serde_json::to_vec(&doc(i)).unwrap();
                client
                    .query_one(&upsert, &[&key.as_bytes(), &value])
                    .await
                    .unwrap();
            }
        }),
        read: op(move |key, i| {
            let (client, select, key) = (r.0.clone(), select.clone(), format!("{}{key}", r.1));
            async move {
                let row = client.query_one(&select, &[&key.as_bytes()]).await.unwrap();
                let d: Doc = serde_json::from_slice(row.get::<_, &[u8]>(0)).unwrap();
                assert_eq!(d.id, i);
            }
        }),
    };
    compare(
        "postgres",
        n,
        16,
        &micro,
        &[("same statements", same), ("key-value table", raw)],
    )
    .await;
    let _ = client
        .execute("DROP TABLE IF EXISTS micro_bench_raw", &[])
        .await;
    let _ = client
        .execute(
            "DELETE FROM micro_store WHERE scope = $1 OR scope = $2",
            &[&scope, &raw_scope],
        )
        .await;
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
    let micro = micro_side(Scoped::new(store, &scope).unwrap());
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
    let written = kv.clone();
    let raw = Side {
        write: op(move |key, i| {
            let kv = written.clone();
            async move {
                let value = serde_json::to_vec(&doc(i)).unwrap();
                kv.put(key, value.into()).await.unwrap();
            }
        }),
        read: op(move |key, i| {
            let kv = kv.clone();
            async move {
                let value = kv.get(key).await.unwrap().unwrap();
                let d: Doc = serde_json::from_slice(&value).unwrap();
                assert_eq!(d.id, i);
            }
        }),
    };
    compare("nats kv", n, 16, &micro, &[("async-nats", raw)]).await;
    let _ = js.delete_key_value(&bucket_name).await;
    let _ = js.delete_key_value(format!("micro-store-{scope}")).await;
}
