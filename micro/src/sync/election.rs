//! Leader election: a campaign that keeps trying to hold one lock.

use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::Locker;

/// A campaign for leadership (from [`Locker::campaign`]). The state is
/// `Some(fence)` while this process leads, with the lock's fencing token,
/// and `None` otherwise; [`watch`](Self::watch) follows it. Dropping the
/// campaign, or [`resign`](Self::resign), stops it and releases the lead.
#[derive(Debug)]
pub struct Leadership {
    state: watch::Receiver<Option<u64>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Leadership {
    pub(super) fn start(locker: Locker, name: String, ttl: Duration) -> Self {
        let (tx, state) = watch::channel(None);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(campaign(locker, name, ttl, tx, stopped));
        Self {
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Whether this process leads now.
    pub fn is_leader(&self) -> bool {
        self.state.borrow().is_some()
    }

    /// The fencing token of this process's lead, while it leads.
    pub fn fence(&self) -> Option<u64> {
        *self.state.borrow()
    }

    /// The state as it changes: `Some(fence)` while leading.
    pub fn watch(&self) -> watch::Receiver<Option<u64>> {
        self.state.clone()
    }

    /// Resolves once this process leads; its fencing token.
    pub async fn elected(&self) -> u64 {
        let mut state = self.state.clone();
        loop {
            if let Some(fence) = *state.borrow_and_update() {
                return fence;
            }
            if state.changed().await.is_err() {
                // The campaign ended: it will never lead.
                return std::future::pending().await;
            }
        }
    }

    /// Stops campaigning and hands the lead on at once if this process
    /// has it.
    pub async fn resign(mut self) {
        self.stop_now().await;
    }

    async fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        // The campaign sees its stop and releases the lock on its own.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Takes the lock whenever it is free, leads while holding it, and
/// releases it when told to stop.
async fn campaign(
    locker: Locker,
    name: String,
    ttl: Duration,
    state: watch::Sender<Option<u64>>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        let attempt = locker.lock(&name, ttl, ttl);
        let lock = tokio::select! {
            _ = &mut stopped => return,
            lock = attempt => lock,
        };
        let lock = match lock {
            Ok(lock) => lock,
            Err(e) => {
                // Held by another (408 after waiting) is the usual case;
                // anything else is worth a line.
                if e.code() != 408 {
                    tracing::warn!(election = %name, error = %e, "campaigning failed; trying again");
                    tokio::select! {
                        _ = &mut stopped => return,
                        () = tokio::time::sleep(ttl / 3) => {}
                    }
                }
                continue;
            }
        };
        state.send_replace(Some(lock.fence()));
        tracing::info!(election = %name, fence = lock.fence(), "elected leader");
        let resigned = tokio::select! {
            _ = &mut stopped => true,
            () = lock.lost() => false,
        };
        state.send_replace(None);
        if resigned {
            if let Err(e) = lock.unlock().await {
                tracing::warn!(election = %name, error = %e, "resigning");
            }
            return;
        }
        tracing::warn!(election = %name, "lost the lead");
    }
}
