//! Run with: cargo run --example scheduler
//!
//! A job that must run on one instance only: every instance campaigns for
//! the lead of the election `reports`, and the leader alone runs the job,
//! every two seconds, recording each run in the store with its lead's
//! fencing token (a former leader that wakes up late cannot overwrite a
//! newer run). One instance runs on the defaults; for several, share a
//! Redis for the locks and the store:
//!
//! ```text
//! for port in 8091 8092 8093; do
//!   MICRO_REGISTRY=memory MICRO_SYNC=redis MICRO_STORE=redis MICRO_SERVER_ADDRESS=127.0.0.1:$port \
//!     cargo run --example scheduler --features redis &
//! done
//! curl -H 'Content-Type: application/json' -H 'Micro-Endpoint: Scheduler.Status' -d '{}' http://localhost:8091
//! ```
//!
//! Postgres or NATS serve as well: `MICRO_SYNC=postgres MICRO_STORE=postgres`
//! with `MICRO_SYNC_ADDRESS` and `MICRO_STORE_ADDRESS` set to the database
//! URL, built with `--features store-backends`. The locks can also live in
//! etcd: `MICRO_SYNC=etcd MICRO_SYNC_ADDRESS=http://127.0.0.1:2379`, built
//! with `--features etcd,redis` for a Redis store beside it.
//!
//! Stop the leader (Ctrl-C or `kill`) and another instance leads at once;
//! kill it with `kill -9` and another leads within the lead's 5 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use micro::store::Scoped;
use micro::{Context, Result, handler, service};
use serde::{Deserialize, Serialize};

/// One run of the job.
#[derive(Debug, Serialize, Deserialize)]
struct Run {
    /// The fencing token of the lead it ran under.
    fence: u64,
    /// The process that ran it.
    pid: u32,
    /// When, in milliseconds since the Unix epoch.
    at_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct Ask {}

#[derive(Serialize, Deserialize)]
struct Status {
    /// This process.
    pid: u32,
    /// Whether this instance leads now.
    leading: bool,
    /// The last run, by whichever instance ran it.
    last_run: Option<Run>,
}

struct Scheduler {
    /// The fencing token of this instance's lead, or 0.
    leading: Arc<AtomicU64>,
    runs: Scoped,
}

#[service]
impl Scheduler {
    /// `Scheduler.Status`: whether this instance leads, and the last run.
    #[handler]
    async fn status(&self, _ctx: Context, _req: Ask) -> Result<Status> {
        let last_run = match self.runs.get::<Run>("last-run").await {
            Ok(run) => Some(run),
            Err(e) if e.code() == 404 => None,
            Err(e) => return Err(e),
        };
        Ok(Status {
            pid: std::process::id(),
            leading: self.leading.load(Ordering::SeqCst) != 0,
            last_run,
        })
    }
}

/// The job: here, recording that it ran, guarded by the lead's token.
async fn run_job(runs: &Scoped, fence: u64) -> Result<()> {
    let at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let run = Run {
        fence,
        pid: std::process::id(),
        at_ms,
    };
    runs.write("last-run", &run).fence(fence).send().await?;
    println!("ran the job as leader (fence {fence})");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt::init();
    let backends = micro::Backends::from_env();
    let runs = Scoped::new(backends.store().clone(), "scheduler")?;
    let leading = Arc::new(AtomicU64::new(0));
    let scheduler = Scheduler {
        leading: leading.clone(),
        runs: runs.clone(),
    };
    micro::Service::new("scheduler")
        .address("127.0.0.1:8091")
        .backends(&backends)
        .handle(scheduler)
        .leader_task_with_ttl("reports", Duration::from_secs(5), move |lead| {
            let (runs, leading) = (runs.clone(), leading.clone());
            async move {
                println!("leading (fence {})", lead.fence());
                leading.store(lead.fence(), Ordering::SeqCst);
                let job = async {
                    loop {
                        if let Err(e) = run_job(&runs, lead.fence()).await {
                            // 409: a later leader has run it; this lead is over.
                            println!("not running the job: {e}");
                        }
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                };
                tokio::select! {
                    () = job => {}
                    () = lead.lost() => {}
                }
                leading.store(0, Ordering::SeqCst);
                println!("no longer leading");
            }
        })
        .run()
        .await
}
