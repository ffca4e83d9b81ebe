//! The client's registry cache: lookups on the call path are answered from
//! memory, kept current by a registry watch.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};

use tokio::sync::oneshot;

use crate::registry::{Record, Registry, RegistryError};

/// Service records by name, refreshed whenever the registry reports a
/// change to one of them. If the registry fails, the last records are
/// served.
pub(crate) struct Lookup {
    registry: Arc<dyn Registry>,
    entries: RwLock<HashMap<String, Arc<Vec<Record>>>>,
    /// Held while a watch task runs; dropping the cache drops it, which
    /// ends the task.
    watch: std::sync::Mutex<Option<oneshot::Sender<()>>>,
}

impl Lookup {
    pub(crate) fn new(registry: Arc<dyn Registry>) -> Arc<Self> {
        Arc::new(Self {
            registry,
            entries: RwLock::default(),
            watch: std::sync::Mutex::new(None),
        })
    }

    pub(crate) fn registry(&self) -> &Arc<dyn Registry> {
        &self.registry
    }

    /// The records of `name`, from memory when known.
    pub(crate) async fn get(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<Arc<Vec<Record>>, RegistryError> {
        if let Some(found) = self.cached(name) {
            return Ok(found);
        }
        self.ensure_watch();
        let records = Arc::new(self.registry.get_service(name).await?);
        self.write().insert(name.to_owned(), records.clone());
        Ok(records)
    }

    fn cached(&self, name: &str) -> Option<Arc<Vec<Record>>> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Vec<Record>>>> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-reads `name` from the registry: replaced when found, dropped when
    /// gone, kept when the registry fails.
    async fn refresh(&self, name: &str) {
        match self.registry.get_service(name).await {
            Ok(records) => {
                self.write().insert(name.to_owned(), Arc::new(records));
            }
            Err(RegistryError::NotFound(_)) => {
                self.write().remove(name);
            }
            Err(e) => tracing::debug!(service = name, error = %e, "keeping cached records"),
        }
    }

    /// Reads every cached service again.
    async fn refresh_all(&self) {
        let names: Vec<String> = self
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        for name in names {
            self.refresh(&name).await;
        }
    }

    /// Starts the watch task unless one runs.
    fn ensure_watch(self: &Arc<Self>) {
        let mut slot = self.watch.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|tx| !tx.is_closed()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (tx, rx) = oneshot::channel();
        *slot = Some(tx);
        runtime.spawn(watch(Arc::downgrade(self), self.registry.clone(), rx));
    }
}

/// Keeps the cache current from the registry's watch. When the watch
/// fails or ends (the registry went away), the cached records stay and are
/// served, and the watch is opened again after a pause; once it is back,
/// every cached service is read again.
async fn watch(cache: Weak<Lookup>, registry: Arc<dyn Registry>, mut stop: oneshot::Receiver<()>) {
    let mut pause = std::time::Duration::from_millis(250);
    let mut first = true;
    loop {
        let opened = tokio::select! {
            _ = &mut stop => return,
            opened = registry.watch() => opened,
        };
        let mut watcher = match opened {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "registry watch failed; serving cached records and trying again");
                tokio::select! {
                    _ = &mut stop => return,
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(std::time::Duration::from_secs(5));
                continue;
            }
        };
        if !first {
            // Changes may have been missed while the watch was down.
            let Some(cache) = cache.upgrade() else { return };
            cache.refresh_all().await;
        }
        first = false;
        pause = std::time::Duration::from_millis(250);
        loop {
            let event = tokio::select! {
                _ = &mut stop => return,
                event = watcher.next() => event,
            };
            let Some(cache) = cache.upgrade() else { return };
            match event {
                Some(Ok(event)) => {
                    let name = event.service.name;
                    if cache.cached(&name).is_some() {
                        cache.refresh(&name).await;
                    }
                }
                Some(Err(RegistryError::Lagged(n))) => {
                    // Missed events: every entry may be stale.
                    tracing::debug!(missed = n, "registry watch lagged; refreshing");
                    cache.refresh_all().await;
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "registry watch failed; serving cached records and trying again");
                    break;
                }
                None => {
                    tracing::debug!(
                        "registry watch ended; serving cached records and watching again"
                    );
                    break;
                }
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}
