//! The changes a store makes, for its watchers, and its sweeper.

use std::sync::{Arc, Once, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio::sync::broadcast;

use super::{Change, StoreError, Watch, check_scope};

/// How often expired records are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How many changes a slow watcher may fall behind before it is told it
/// missed some.
const WATCH_BUFFER: usize = 1024;

/// Every change a store in this process makes, for the watches on it, and
/// the sweeper that removes its expired records.
#[derive(Debug)]
pub(super) struct Changes {
    sender: broadcast::Sender<(String, Change)>,
    sweeping: Once,
}

impl Changes {
    pub(super) fn new() -> Self {
        Self {
            sender: broadcast::channel(WATCH_BUFFER).0,
            sweeping: Once::new(),
        }
    }

    /// Tells the watches of `scope`.
    pub(super) fn send(&self, scope: &str, change: Change) {
        let _ = self.sender.send((scope.to_owned(), change));
    }

    /// The changes of `scope` under `prefix` from now on.
    pub(super) fn watch(&self, scope: &str, prefix: &str) -> Result<Watch, StoreError> {
        check_scope(scope)?;
        let (scope, prefix) = (scope.to_owned(), prefix.to_owned());
        Ok(changes_of(self.sender.subscribe())
            .filter_map(move |item| {
                let wanted = match &item {
                    Ok((s, change)) => *s == scope && change.key().starts_with(&prefix),
                    Err(_) => true,
                };
                std::future::ready(wanted.then(|| item.map(|(_, change)| change)))
            })
            .boxed())
    }

    /// Runs `sweep` on `inner` every second while it lives, starting on the
    /// first call (and only where a Tokio runtime runs).
    pub(super) fn sweep_in_background<T: Send + Sync + 'static>(
        &self,
        inner: &Arc<T>,
        sweep: fn(Arc<T>) -> BoxFuture<'static, ()>,
    ) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        self.sweeping.call_once(|| {
            let weak: Weak<T> = Arc::downgrade(inner);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(SWEEP_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(inner) = weak.upgrade() else { break };
                    sweep(inner).await;
                }
            });
        });
    }
}

/// A broadcast receiver as a stream; falling behind is an error that says
/// how many changes were missed.
fn changes_of(
    receiver: broadcast::Receiver<(String, Change)>,
) -> impl futures_util::Stream<Item = Result<(String, Change), StoreError>> {
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        match receiver.recv().await {
            Ok(item) => Some((Ok(item), receiver)),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                let missed =
                    StoreError::Backend(format!("the watcher fell behind and missed {n} changes"));
                Some((Err(missed), receiver))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    })
}
