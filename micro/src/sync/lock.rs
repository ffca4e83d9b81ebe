//! The guard of a held lock: renewal, the lost signal, release.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Locks;
use crate::Error;

/// A held lock. It renews its lease every third of its time to live; if a
/// renewal is refused, or the backend cannot be reached until the lease
/// has run out, the lock is lost: [`lost`](Self::lost) resolves and
/// [`is_lost`](Self::is_lost) turns true. Dropping it releases it (in the
/// background); [`unlock`](Self::unlock) releases it and says whether it
/// was still held.
#[must_use = "a lock is released when its guard is dropped"]
pub struct Lock {
    held: Arc<Held>,
    lost: watch::Receiver<bool>,
    renewal: Option<JoinHandle<()>>,
}

struct Held {
    backend: Arc<dyn Locks>,
    name: String,
    owner: String,
    fence: u64,
    ttl: Duration,
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lock")
            .field("name", &self.held.name)
            .field("owner", &self.held.owner)
            .field("fence", &self.held.fence)
            .field("lost", &self.is_lost())
            .finish()
    }
}

impl Lock {
    /// The guard of `name`, held by `owner` with `fence` since `asked`.
    pub(super) fn held(
        backend: Arc<dyn Locks>,
        (name, owner): (String, String),
        fence: u64,
        ttl: Duration,
        asked: Instant,
    ) -> Self {
        let held = Arc::new(Held {
            backend,
            name,
            owner,
            fence,
            ttl,
        });
        let (tx, lost) = watch::channel(false);
        let renewal = tokio::spawn(renew(held.clone(), tx, asked));
        Self {
            held,
            lost,
            renewal: Some(renewal),
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.held.name
    }

    /// The owner id this lock is held under.
    pub fn owner(&self) -> &str {
        &self.held.owner
    }

    /// The fencing token: larger than that of every earlier holder of this
    /// name. Pass it to what the lock guards, so that it can refuse a
    /// holder whose lease ran out.
    pub fn fence(&self) -> u64 {
        self.held.fence
    }

    /// Whether the lock has been lost.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Resolves once the lock is lost (at once if it already is). Run the
    /// guarded work in a `select!` against it to stop when the lock goes.
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        // The sender lives as long as the renewal, which ends only on loss
        // or release; an error means it ended.
        let _ = lost.wait_for(|lost| *lost).await;
    }

    /// Releases the lock.
    ///
    /// # Errors
    /// 409 if it had been lost (another may hold it now); 503 if the
    /// backend cannot be reached (the lease then ends by itself).
    pub async fn unlock(mut self) -> crate::Result<()> {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        let held = self.held.clone();
        let released = (held.backend)
            .release(&held.name, &held.owner, held.fence)
            .await?;
        if released {
            Ok(())
        } else {
            Err(Error::conflict(format!(
                "lock \"{}\" was lost before it was unlocked",
                held.name
            )))
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let Some(renewal) = self.renewal.take() else {
            return;
        };
        renewal.abort();
        let held = self.held.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = (held.backend)
                    .release(&held.name, &held.owner, held.fence)
                    .await;
            });
        }
    }
}

/// Renews `held` every third of its time to live until a renewal is
/// refused or the lease has run out unrenewed; then says it is lost.
async fn renew(held: Arc<Held>, lost: watch::Sender<bool>, asked: Instant) {
    let every = held.ttl / 3;
    let mut expires = asked + held.ttl;
    let mut next = asked + every;
    loop {
        tokio::time::sleep_until(next.min(expires)).await;
        if Instant::now() >= expires {
            break;
        }
        let asked = Instant::now();
        let renewal = (held.backend).renew(&held.name, &held.owner, held.fence, held.ttl);
        match tokio::time::timeout_at(expires, renewal).await {
            Ok(Ok(true)) => {
                expires = asked + held.ttl;
                next = asked + every;
            }
            Ok(Ok(false)) => break,
            Ok(Err(e)) => {
                tracing::warn!(lock = %held.name, error = %e, "renewing a lock failed; trying again");
                next = Instant::now() + (every / 4).max(Duration::from_millis(5));
            }
            Err(_) => break,
        }
    }
    tracing::warn!(lock = %held.name, "lock lost");
    let _ = lost.send(true);
}
