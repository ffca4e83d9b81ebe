//! Locks in this process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Holder, Locks, SyncError};

/// Locks held in this process's memory: the default. A waiter is woken as
/// soon as a lock is released; tokens count up from 1 per name for the
/// life of the process.
#[derive(Debug, Default)]
pub struct MemoryLocks {
    state: Mutex<HashMap<String, Entry>>,
    released: Notify,
}

#[derive(Debug)]
struct Entry {
    /// The last token handed out for this name.
    fence: u64,
    /// The holder and when its lease ends, if anyone holds it.
    held: Option<(String, Instant)>,
}

impl MemoryLocks {
    /// No locks held yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The live holder of `entry`, if its lease has not run out.
fn live(entry: &Entry, now: Instant) -> Option<&str> {
    match &entry.held {
        Some((owner, until)) if *until > now => Some(owner),
        _ => None,
    }
}

impl Locks for MemoryLocks {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn acquire<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<u64>, SyncError>> {
        let now = Instant::now();
        let fence = self.with(|state| {
            let entry = state.entry(name.to_owned()).or_insert(Entry {
                fence: 0,
                held: None,
            });
            if live(entry, now).is_some() {
                return None;
            }
            entry.fence += 1;
            entry.held = Some((owner.to_owned(), now + ttl));
            Some(entry.fence)
        });
        Box::pin(async move { Ok(fence) })
    }

    fn renew<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        fence: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, SyncError>> {
        let now = Instant::now();
        let renewed = self.with(|state| match state.get_mut(name) {
            Some(entry) if entry.fence == fence && live(entry, now) == Some(owner) => {
                entry.held = Some((owner.to_owned(), now + ttl));
                true
            }
            _ => false,
        });
        Box::pin(async move { Ok(renewed) })
    }

    fn release<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        fence: u64,
    ) -> BoxFuture<'a, Result<bool, SyncError>> {
        let now = Instant::now();
        let released = self.with(|state| match state.get_mut(name) {
            Some(entry) if entry.fence == fence && live(entry, now) == Some(owner) => {
                entry.held = None;
                true
            }
            _ => false,
        });
        if released {
            self.released.notify_waiters();
        }
        Box::pin(async move { Ok(released) })
    }

    fn holder<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Holder>, SyncError>> {
        let now = Instant::now();
        let holder = self.with(|state| {
            let entry = state.get(name)?;
            live(entry, now).map(|owner| Holder {
                owner: owner.to_owned(),
                fence: entry.fence,
            })
        });
        Box::pin(async move { Ok(holder) })
    }

    fn freed<'a>(&'a self, name: &'a str, at_most: Duration) -> BoxFuture<'a, ()> {
        // A lease that runs out wakes nobody: wait no longer than it has.
        let now = Instant::now();
        let wait = self.with(|state| {
            state
                .get(name)
                .and_then(|e| e.held.as_ref())
                .map_or(Duration::ZERO, |(_, until)| {
                    until.saturating_duration_since(now)
                })
        });
        let released = self.released.notified();
        Box::pin(async move {
            let _ = tokio::time::timeout(at_most.min(wait), released).await;
        })
    }
}
