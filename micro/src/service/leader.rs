//! Tasks that run only while this node leads an election.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::sync::{Leadership, Locker};

/// The time to live of a leader task's lead, unless given.
pub const DEFAULT_LEADER_TTL: Duration = Duration::from_secs(10);

/// The node metadata key that says this node leads `election`; its value
/// is the lead's fencing token.
pub fn leader_key(election: &str) -> String {
    format!("{LEADER_PREFIX}{election}")
}

/// The prefix of the node metadata keys that name the elections a node
/// leads.
pub const LEADER_PREFIX: &str = "leader.";

/// What a leader task is given: its lead's fencing token, and a way to
/// learn that the lead is over. The task's future is also dropped when
/// the lead ends, so a task that never looks at [`lost`](Self::lost) still
/// stops at its next `.await`.
#[derive(Clone, Debug)]
pub struct Leading {
    fence: u64,
    state: watch::Receiver<Option<u64>>,
}

impl Leading {
    /// The fencing token of this lead: pass it to a store write's version
    /// or fence check, so that a former leader cannot overwrite the work
    /// of a later one.
    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// Resolves when this lead is over.
    pub async fn lost(&self) {
        let mut state = self.state.clone();
        let fence = self.fence;
        let _ = state.wait_for(|now| *now != Some(fence)).await;
    }
}

type Task = Arc<dyn Fn(Leading) -> BoxFuture<'static, ()> + Send + Sync>;

/// A task of [`Service::leader_task`](super::Service::leader_task).
pub(super) struct LeaderTask {
    pub(super) election: String,
    pub(super) ttl: Duration,
    pub(super) task: Task,
}

impl LeaderTask {
    pub(super) fn new<F, Fut>(election: String, ttl: Duration, task: F) -> Self
    where
        F: Fn(Leading) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self {
            election,
            ttl,
            task: Arc::new(move |leading| Box::pin(task(leading))),
        }
    }
}

/// The campaigns of a running service, and the node metadata they keep.
pub(super) struct Campaigns {
    running: Vec<(Leadership, JoinHandle<()>)>,
}

impl Campaigns {
    /// Campaigns for each task's election as `locker`'s owner, running the
    /// task while leading; `metadata` gets `leader.<election>` while so.
    pub(super) fn start(
        tasks: Vec<LeaderTask>,
        locker: &Locker,
        metadata: &watch::Sender<BTreeMap<String, String>>,
    ) -> crate::Result<Self> {
        let mut running = Vec::with_capacity(tasks.len());
        for task in tasks {
            let leadership = locker.campaign(&task.election, task.ttl)?;
            let driver = tokio::spawn(drive(task, leadership.watch(), metadata.clone()));
            running.push((leadership, driver));
        }
        Ok(Self { running })
    }

    /// Resigns every lead, so another node takes over at once, after the
    /// tasks have been stopped.
    pub(super) async fn resign(self) {
        for (leadership, driver) in self.running {
            driver.abort();
            let _ = driver.await;
            leadership.resign().await;
        }
    }
}

/// Runs `task` during each lead of its election.
async fn drive(
    task: LeaderTask,
    mut state: watch::Receiver<Option<u64>>,
    metadata: watch::Sender<BTreeMap<String, String>>,
) {
    let key = leader_key(&task.election);
    loop {
        let fence = match state.wait_for(Option::is_some).await {
            Ok(fence) => (*fence).expect("waited for a lead"),
            Err(_) => return,
        };
        metadata.send_modify(|m| {
            m.insert(key.clone(), fence.to_string());
        });
        let leading = Leading {
            fence,
            state: state.clone(),
        };
        let run = (task.task)(leading.clone());
        tokio::select! {
            () = run => {}
            () = leading.lost() => {
                tracing::warn!(election = %task.election, "the lead ended; the leader task was stopped");
            }
        }
        // A task that returned keeps the lead until it is lost or resigned.
        leading.lost().await;
        metadata.send_modify(|m| {
            m.remove(&key);
        });
    }
}
