//! Run with: cargo bench -p micro-examples --features redis --bench sync
//!
//! Lock and unlock cycles per second through micro's Redis locks against
//! redis-rs running the same commands (the same three scripts: take with
//! a token, and release if still the holder's), in one process and one
//! run, as a ratio; 16 tasks, each on a lock of its own, so that the
//! figure is the cost of a cycle, not of waiting. micro's side also
//! starts and stops the guard's renewal task on each cycle, which the raw
//! side has no equivalent of. Three rounds in turn, the best of each kept.
//! The memory backend's rate is printed for reference.
//!
//! The server is at `MICRO_TEST_REDIS` (default `redis://127.0.0.1:6379`);
//! it is skipped, saying so, when it cannot be reached. `BENCH_CYCLES`
//! sets the cycles per round (default 20000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use micro::sync::{Locker, Locks, MemoryLocks, RedisLocks};

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

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let memory = Locker::new(Arc::new(MemoryLocks::new()));
    let memory_rate = micro_cycles(&memory, "memory", n).await;
    println!("memory: {memory_rate:.0} lock/unlock cycles/s");

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
    let (mut best_micro, mut best_raw) = (0f64, 0f64);
    for round in 0..ROUNDS {
        best_micro = best_micro.max(micro_cycles(&locker, &format!("{run}.{round}"), n).await);
        let (acquire, release, c) = (acquire.clone(), release.clone(), conn.clone());
        let raw = rate(n, move |t, i| {
            let (acquire, release, mut c) = (acquire.clone(), release.clone(), c.clone());
            async move {
                let key = format!("bench:rawlock:{run}:{round}:{t}");
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
        .await;
        best_raw = best_raw.max(raw);
    }
    println!(
        "redis: micro {best_micro:.0} cycles/s, redis-rs {best_raw:.0} cycles/s: {:.2}x",
        best_micro / best_raw
    );
    // This run's token counters.
    for pattern in [
        format!("micro:sync:{{bench.{run}.*"),
        format!("bench:rawlock:{run}:*"),
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
