//! Run with: cargo bench -p micro-examples --features store-backends --bench sync
//!
//! Lock and unlock cycles per second through micro's locks against each
//! backend's own client running the same commands, in one process and one
//! run, as a ratio: redis-rs with the same two scripts (take with a token;
//! release if still the holder's), tokio-postgres with the same two
//! statements on as many connections, and async-nats with the same
//! key-value reads and compare-and-sets. 16 tasks, each on a lock of its
//! own, so that the figure is the cost of a cycle, not of waiting.
//! micro's side also starts and stops the guard's renewal task on each
//! cycle, which the raw side has no equivalent of. Three rounds in turn,
//! the best of each kept. The memory backend's rate is printed for
//! reference.
//!
//! The servers are at `MICRO_TEST_REDIS` (default
//! `redis://127.0.0.1:6379`), `MICRO_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and `MICRO_TEST_NATS_KV`
//! (default `nats://127.0.0.1:4222`); each is skipped, saying so, when it
//! cannot be reached. `BENCH_CYCLES` sets the cycles per round (default
//! 20000; a tenth of it for NATS, whose writes are stored).

use std::sync::Arc;
use std::time::{Duration, Instant};

use micro::sync::{Locker, Locks, MemoryLocks, NatsLocks, PostgresLocks, RedisLocks};

const ROUNDS: usize = 3;
const TASKS: usize = 16;
const TTL: Duration = Duration::from_secs(10);

/// Runs `cycle(task, i)` `n` times over 16 tasks; cycles/s.
async fn rate<F, Fut>(n: usize, cycle: F) -> f64
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let cycle = Arc::new(cycle);
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let cycle = cycle.clone();
            tokio::spawn(async move {
                for i in 0..n / TASKS {
                    cycle(t, i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (n / TASKS * TASKS) as f64 / started.elapsed().as_secs_f64()
}

async fn micro_cycles(locker: &Locker, run: &str, n: usize) -> f64 {
    let (locker, run) = (locker.clone(), run.to_owned());
    rate(n, move |t, _| {
        let (locker, name) = (locker.clone(), format!("bench.{run}.{t}"));
        async move {
            let lock = locker.try_lock(&name, TTL).await.unwrap().expect("free");
            lock.unlock().await.unwrap();
        }
    })
    .await
}

/// Three rounds of micro's cycles and the raw ones in turn; the best of
/// each, and their ratio, printed.
async fn compare<R, Fut>(name: &str, raw_client: &str, locker: &Locker, n: usize, raw: R)
where
    R: Fn(usize, String) -> Fut,
    Fut: Future<Output = f64>,
{
    let run = std::process::id();
    let (mut best_micro, mut best_raw) = (0f64, 0f64);
    for round in 0..ROUNDS {
        best_micro = best_micro.max(micro_cycles(locker, &format!("{run}.{round}"), n).await);
        best_raw = best_raw.max(raw(n, format!("{run}-{round}")).await);
    }
    println!(
        "{name}: micro {best_micro:.0} cycles/s, {raw_client} {best_raw:.0} cycles/s: {:.2}x",
        best_micro / best_raw
    );
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let memory = Locker::new(Arc::new(MemoryLocks::new()));
    let memory_rate = micro_cycles(&memory, "memory", n).await;
    println!("memory: {memory_rate:.0} lock/unlock cycles/s");
    redis_rows(n).await;
    postgres_rows(n).await;
    nats_rows((n / 10).max(TASKS)).await;
}

async fn redis_rows(n: usize) {
    let url = std::env::var("MICRO_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let client = redis::Client::open(url.as_str()).unwrap();
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        println!("redis: skipped, no Redis server at {url}");
        return;
    };
    let backend: Arc<dyn Locks> = Arc::new(RedisLocks::new(&url).unwrap());
    let locker = Locker::new(backend);
    // The same commands as micro's backend: take the key if absent with
    // the next token, and delete it only if it still holds ours.
    let acquire = Arc::new(redis::Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
        local fence = redis.call('INCR', KEYS[2])
        redis.call('SET', KEYS[1], fence .. ' ' .. ARGV[1], 'PX', ARGV[2])
        return fence",
    ));
    let release = Arc::new(redis::Script::new(
        r"
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0",
    ));
    let run = std::process::id();
    compare("redis", "redis-rs", &locker, n, |n, round| {
        let (acquire, release, c) = (acquire.clone(), release.clone(), conn.clone());
        rate(n, move |t, i| {
            let (acquire, release, mut c) = (acquire.clone(), release.clone(), c.clone());
            let key = format!("bench:rawlock:{round}:{t}");
            async move {
                let owner = format!("raw/{t}-{i}");
                let fence: u64 = acquire
                    .key(&key)
                    .key(format!("{key}:fence"))
                    .arg(&owner)
                    .arg(TTL.as_millis() as u64)
                    .invoke_async(&mut c)
                    .await
                    .unwrap();
                assert!(fence > 0, "free");
                let released: i64 = release
                    .key(&key)
                    .arg(format!("{fence} {owner}"))
                    .invoke_async(&mut c)
                    .await
                    .unwrap();
                assert_eq!(released, 1);
            }
        })
    })
    .await;
    // This run's token counters.
    for pattern in [
        format!("micro:sync:{{bench.{run}.*"),
        format!("bench:rawlock:{run}-*"),
    ] {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: Result<i64, _> = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
        }
    }
}

/// The statements micro's Postgres locks run to take and release a lock.
const PG_ACQUIRE: &str = "INSERT INTO micro_locks (name, owner, fence, expires_at) \
     VALUES ($1, $2, 1, clock_timestamp() + $3::BIGINT * INTERVAL '1 millisecond') \
     ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, \
     fence = micro_locks.fence + 1, expires_at = EXCLUDED.expires_at \
     WHERE micro_locks.owner IS NULL OR micro_locks.expires_at <= clock_timestamp() \
     RETURNING fence";
const PG_RELEASE: &str = "UPDATE micro_locks SET owner = NULL, expires_at = NULL \
     WHERE name = $1 AND owner = $2 AND fence = $3 AND expires_at > clock_timestamp() RETURNING 1";

/// As many connections as micro's pool.
const PG_POOL: usize = 4;

async fn postgres_rows(n: usize) {
    let url = std::env::var("MICRO_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut clients = Vec::new();
    for _ in 0..PG_POOL {
        match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                clients.push(client);
            }
            Err(e) => {
                println!("postgres: skipped, no Postgres server at {url}: {e}");
                return;
            }
        }
    }
    let locker = Locker::new(Arc::new(PostgresLocks::new(&url).unwrap()));
    // micro makes its table on first use; the raw side uses it too.
    drop(locker.try_lock("bench.setup", TTL).await.unwrap());
    let mut prepared = Vec::new();
    for c in &clients {
        prepared.push((
            c.prepare(PG_ACQUIRE).await.unwrap(),
            c.prepare(PG_RELEASE).await.unwrap(),
        ));
    }
    let clients = Arc::new(clients);
    let prepared = Arc::new(prepared);
    let run = std::process::id();
    compare("postgres", "tokio-postgres", &locker, n, |n, round| {
        let (clients, prepared) = (clients.clone(), prepared.clone());
        rate(n, move |t, i| {
            let (clients, prepared) = (clients.clone(), prepared.clone());
            let name = format!("bench-raw.{round}.{t}");
            let owner = format!("raw/{t}-{i}");
            async move {
                // Round robin over the connections, call by call, as
                // micro's pool does.
                let at = (t + i) % PG_POOL;
                let ttl = TTL.as_millis() as i64;
                let row = (clients[at].query_one(&prepared[at].0, &[&name, &owner, &ttl]))
                    .await
                    .unwrap();
                let fence: i64 = row.get(0);
                let at = (at + 1) % PG_POOL;
                let rows = (clients[at].query(&prepared[at].1, &[&name, &owner, &fence]))
                    .await
                    .unwrap();
                assert_eq!(rows.len(), 1);
            }
        })
    })
    .await;
    let _ = clients[0]
        .execute(
            "DELETE FROM micro_locks WHERE name LIKE $1 OR name LIKE $2",
            &[&format!("bench.{run}.%"), &format!("bench-raw.{run}-%")],
        )
        .await;
}

async fn nats_rows(n: usize) {
    use async_nats::jetstream::kv;

    let url =
        std::env::var("MICRO_TEST_NATS_KV").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let Ok(client) = async_nats::connect(url.as_str()).await else {
        println!("nats: skipped, no NATS server at {url}");
        return;
    };
    let locker = Locker::new(Arc::new(NatsLocks::with_client(client.clone())));
    // micro makes its bucket on first use; the raw side uses it too.
    drop(locker.try_lock("bench.setup", TTL).await.unwrap());
    let kv = async_nats::jetstream::new(client)
        .get_key_value("micro-sync")
        .await
        .unwrap();
    let hex = |name: &str| -> String { name.bytes().map(|b| format!("{b:02x}")).collect() };
    compare("nats", "async-nats", &locker, n, |n, round| {
        let kv = kv.clone();
        rate(n, move |t, i| {
            let kv = kv.clone();
            let key = hex(&format!("bench-raw.{round}.{t}"));
            let value = format!("- {} raw/{t}-{i}", TTL.as_millis());
            async move {
                // Take: read the key, write it if free (absent or deleted).
                let taken = match kv.entry(&key).await.unwrap() {
                    None => kv.create(&key, value.clone().into()).await.unwrap(),
                    Some(e) => {
                        assert_ne!(e.operation, kv::Operation::Put, "free");
                        kv.update(&key, value.clone().into(), e.revision)
                            .await
                            .unwrap()
                    }
                };
                // Release: read it, check it is ours, delete at its revision.
                let e = kv.entry(&key).await.unwrap().expect("held");
                assert_eq!((e.revision, &e.value[..]), (taken, value.as_bytes()));
                kv.delete_expect_revision(&key, Some(e.revision))
                    .await
                    .unwrap();
            }
        })
    })
    .await;
    let mut keys = kv.keys().await.unwrap();
    let run = std::process::id();
    let mine = [
        hex(&format!("bench.{run}.")),
        hex(&format!("bench-raw.{run}-")),
    ];
    use futures_util::StreamExt;
    while let Some(Ok(key)) = keys.next().await {
        if mine.iter().any(|m| key.starts_with(m.as_str())) {
            let _ = kv.purge(&key).await;
        }
    }
}
