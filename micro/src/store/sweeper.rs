//! The background task that removes a store's expired records.

use std::sync::{Arc, Once};
use std::time::Duration;

use super::Store;

/// Starts, once, a task that calls a store's [`Store::sweep`] every
/// period while the store lives (and only where a Tokio runtime runs).
#[derive(Debug)]
pub(super) struct Sweeper {
    started: Once,
}

impl Sweeper {
    pub(super) const fn new() -> Self {
        Self {
            started: Once::new(),
        }
    }

    /// Sweeps the store made by `store(inner)` every `every`, from the
    /// first call on, until the last handle to `inner` is dropped.
    pub(super) fn start<T, S>(&self, inner: &Arc<T>, every: Duration, store: fn(Arc<T>) -> S)
    where
        T: Send + Sync + 'static,
        S: Store,
    {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        self.started.call_once(|| {
            let weak = Arc::downgrade(inner);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(inner) = weak.upgrade() else { break };
                    let store = store(inner);
                    if let Err(e) = store.sweep().await {
                        tracing::warn!(store = store.name(), error = %e, "sweeping the store failed");
                    }
                }
            });
        });
    }
}
