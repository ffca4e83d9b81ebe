//! The changes a store makes, for its watchers.

use futures_util::StreamExt;
use tokio::sync::broadcast;

use super::{Change, StoreError, Watch, check_scope};

/// How many changes a slow watcher may fall behind before it is told it
/// missed some.
const WATCH_BUFFER: usize = 1024;

/// Every change a store in this process makes, for the watches on it.
#[derive(Debug)]
pub(super) struct Changes {
    sender: broadcast::Sender<Item>,
}

/// A change in a scope, or an error every watcher is told.
type Item = Result<(String, Change), StoreError>;

impl Changes {
    pub(super) fn new() -> Self {
        Self {
            sender: broadcast::channel(WATCH_BUFFER).0,
        }
    }

    /// Tells the watches of `scope`.
    pub(super) fn send(&self, scope: &str, change: Change) {
        let _ = self.sender.send(Ok((scope.to_owned(), change)));
    }

    /// Tells every watch that something went wrong, such as a lost
    /// connection to the backend.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(super) fn fail(&self, error: StoreError) {
        let _ = self.sender.send(Err(error));
    }

    /// How many watches read these changes.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(super) fn watchers(&self) -> usize {
        self.sender.receiver_count()
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
}

/// A broadcast receiver as a stream; falling behind is an error that says
/// how many changes were missed.
fn changes_of(receiver: broadcast::Receiver<Item>) -> impl futures_util::Stream<Item = Item> {
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        match receiver.recv().await {
            Ok(item) => Some((item, receiver)),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                let missed =
                    StoreError::Backend(format!("the watcher fell behind and missed {n} changes"));
                Some((Err(missed), receiver))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    })
}
