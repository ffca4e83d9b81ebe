//! How a node advertises its subscriptions in its registration, for a
//! broker whose publishers find subscribers through the registry (the HTTP
//! broker): the metadata, kept current as subscriptions come and go, and
//! the acknowledgement that lets `subscribe` return once publishers can
//! find the new subscription.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::local::Local;

/// How long a `subscribe` waits for the service to register the new
/// subscription before it fails.
pub(crate) const REGISTER_WAIT: Duration = Duration::from_secs(5);

/// The state a broker shares with the [`Advertisement`]s it hands out.
#[derive(Debug)]
pub(crate) struct Adverts {
    /// The highest version of the subscriptions in the registry.
    registered: watch::Sender<u64>,
    /// How many advertisements (services registering) are live.
    attached: Arc<AtomicUsize>,
}

impl Default for Adverts {
    fn default() -> Self {
        Self {
            registered: watch::channel(0).0,
            attached: Arc::default(),
        }
    }
}

impl Adverts {
    /// An advertisement of `local`'s subscriptions.
    pub(crate) fn advertise(&self, local: &Arc<Local>) -> Advertisement {
        self.attached.fetch_add(1, Ordering::SeqCst);
        Advertisement {
            local: local.clone(),
            changes: local.changes(),
            registered: self.registered.clone(),
            attached: self.attached.clone(),
        }
    }

    /// Waits until `version` of the subscriptions is in the registry, if a
    /// service is registering them; false if that takes longer than
    /// [`REGISTER_WAIT`].
    pub(crate) async fn wait_registered(&self, version: u64) -> bool {
        if self.attached.load(Ordering::SeqCst) == 0 {
            // Nobody registers this broker's subscriptions yet: a service
            // that starts includes them in its first registration.
            return true;
        }
        let mut registered = self.registered.subscribe();
        let wait = registered.wait_for(|r| *r >= version);
        matches!(tokio::time::timeout(REGISTER_WAIT, wait).await, Ok(Ok(_)))
    }
}

/// A node's subscriptions as registry metadata (`sub.<topic>` → its queue
/// groups, docs/wire.md "Events over HTTP"), kept current.
///
/// A service takes one from its broker
/// ([`Broker::advertisement`](super::Broker::advertisement)) when it
/// registers, re-registers when the subscriptions change, and tells the
/// broker which version the registry has, so that a `subscribe` made while
/// the service runs returns once publishers can find it.
pub struct Advertisement {
    local: Arc<Local>,
    changes: watch::Receiver<u64>,
    registered: watch::Sender<u64>,
    attached: Arc<AtomicUsize>,
}

impl fmt::Debug for Advertisement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Advertisement")
            .field("version", &*self.changes.borrow())
            .finish_non_exhaustive()
    }
}

impl Advertisement {
    /// The metadata entries now, and their version (pass it to
    /// [`registered`](Self::registered) once they are in the registry).
    pub fn current(&mut self) -> (u64, BTreeMap<String, String>) {
        let version = *self.changes.borrow_and_update();
        (version, self.local.advertised())
    }

    /// Waits until the subscriptions change; false once the broker is
    /// gone.
    pub async fn changed(&mut self) -> bool {
        self.changes.changed().await.is_ok()
    }

    /// Says that `version` of the subscriptions is in the registry.
    pub fn registered(&self, version: u64) {
        self.registered.send_if_modified(|r| {
            let newer = version > *r;
            if newer {
                *r = version;
            }
            newer
        });
    }
}

impl Drop for Advertisement {
    fn drop(&mut self) {
        self.attached.fetch_sub(1, Ordering::SeqCst);
    }
}
