//! Locks on a store that keeps a revision per write and can write or
//! delete a key only if its revision is still the one read (NATS KV,
//! etcd): a key per lock, taken, renewed and released by compare-and-set.
//!
//! A held lock's key holds its token, its time to live, when it was last
//! written (by the writer's clock) and its holder. The token is the
//! revision of the write that took the lock: a store's revisions only
//! grow, so every holder's token is larger than the last. Only the holder
//! renews or releases, and of two takers one wins. Such stores keep no
//! lease of a key's own that is fine-grained enough, so a lease ends as
//! its waiters see it ([`Sightings`]).

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::sighting::{Sightings, unix_millis};
use super::{Holder, SyncError};

/// A key as the store holds it.
pub(super) struct Entry {
    /// `None` for a key deleted but remembered (a NATS tombstone).
    pub(super) value: Option<Bytes>,
    pub(super) revision: u64,
    /// When the store wrote it, in milliseconds since the epoch, if the
    /// store keeps that (else the writer's time in the value counts).
    pub(super) written: Option<i128>,
}

/// The four things a store does for its locks.
pub(super) trait Store: Send + Sync + 'static {
    /// The store's key for lock `name`.
    fn key(&self, name: &str) -> String;

    /// `key` as it is now, if the store has it.
    fn read<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Entry>, SyncError>>;

    /// Writes `value` to `key` if the key is absent (`expect` `None`) or
    /// was last written at revision `expect`: the new revision, or `None`
    /// when another wrote first.
    fn write<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        expect: Option<u64>,
    ) -> BoxFuture<'a, Result<Option<u64>, SyncError>>;

    /// Deletes `key` if it was last written at `revision`; whether it did.
    fn delete<'a>(&'a self, key: &'a str, revision: u64) -> BoxFuture<'a, Result<bool, SyncError>>;

    /// The error for a key that holds what micro did not write.
    fn foreign(&self, key: &str) -> SyncError;
}

/// What a held lock's key says.
struct Lease {
    fence: u64,
    ttl: Duration,
    written: i128,
    owner: String,
}

/// The lock algorithm over a [`Store`].
#[derive(Debug)]
pub(super) struct Revisioned<S> {
    store: S,
    seen: Sightings,
}

impl<S: Store> Revisioned<S> {
    pub(super) fn new(store: S) -> Self {
        Self {
            store,
            seen: Sightings::default(),
        }
    }

    /// `key`'s revision and lease, if it holds a lock.
    async fn entry(&self, key: &str) -> Result<Option<(u64, Lease)>, SyncError> {
        let Some(entry) = self.store.read(key).await? else {
            return Ok(None);
        };
        if entry.value.is_none() {
            return Ok(None);
        }
        let lease = lease(&entry).ok_or_else(|| self.store.foreign(key))?;
        Ok(Some((entry.revision, lease)))
    }

    /// The revision of `key` while `owner` holds it with `fence`.
    async fn held(&self, key: &str, owner: &str, fence: u64) -> Result<Option<u64>, SyncError> {
        Ok(self
            .entry(key)
            .await?
            .filter(|(_, lease)| lease.owner == owner && lease.fence == fence)
            .map(|(revision, _)| revision))
    }

    fn ended(&self, name: &str, revision: u64, lease: &Lease) -> bool {
        self.seen.ended(name, revision, lease.ttl, lease.written)
    }

    pub(super) async fn acquire(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, SyncError> {
        let key = self.store.key(name);
        let expect = match self.store.read(&key).await? {
            None => None,
            Some(entry) => {
                if entry.value.is_some() {
                    let lease = lease(&entry).ok_or_else(|| self.store.foreign(&key))?;
                    if !self.ended(name, entry.revision, &lease) {
                        return Ok(None);
                    }
                }
                Some(entry.revision)
            }
        };
        let taken = self
            .store
            .write(&key, value(None, ttl, owner), expect)
            .await?;
        if taken.is_some() {
            self.seen.forget(name);
        }
        Ok(taken)
    }

    pub(super) async fn renew(
        &self,
        name: &str,
        owner: &str,
        fence: u64,
        ttl: Duration,
    ) -> Result<bool, SyncError> {
        let key = self.store.key(name);
        // A write between the read and the compare-and-set (a release
        // racing this renewal) is read again: the lease is renewed only if
        // this holder still has it.
        loop {
            let Some(revision) = self.held(&key, owner, fence).await? else {
                return Ok(false);
            };
            let renewed = value(Some(fence), ttl, owner);
            if self
                .store
                .write(&key, renewed, Some(revision))
                .await?
                .is_some()
            {
                return Ok(true);
            }
        }
    }

    pub(super) async fn release(
        &self,
        name: &str,
        owner: &str,
        fence: u64,
    ) -> Result<bool, SyncError> {
        let key = self.store.key(name);
        // The holder's own renewal can rewrite the key between the read and
        // the delete: read again, and release while still held.
        loop {
            let Some(revision) = self.held(&key, owner, fence).await? else {
                return Ok(false);
            };
            if self.store.delete(&key, revision).await? {
                return Ok(true);
            }
        }
    }

    pub(super) async fn holder(&self, name: &str) -> Result<Option<Holder>, SyncError> {
        let Some((revision, lease)) = self.entry(&self.store.key(name)).await? else {
            return Ok(None);
        };
        if self.ended(name, revision, &lease) {
            return Ok(None);
        }
        Ok(Some(Holder {
            owner: lease.owner,
            fence: lease.fence,
        }))
    }
}

/// A held lock's value: its token (`-` for the revision of this very
/// write), its time to live and the time of this write in milliseconds,
/// and its holder.
fn value(fence: Option<u64>, ttl: Duration, owner: &str) -> Bytes {
    let ms = ttl.as_millis().max(1);
    let now = unix_millis();
    match fence {
        Some(fence) => format!("{fence} {ms} {now} {owner}"),
        None => format!("- {ms} {now} {owner}"),
    }
    .into()
}

fn lease(entry: &Entry) -> Option<Lease> {
    let text = std::str::from_utf8(entry.value.as_deref()?).ok()?;
    let mut parts = text.splitn(4, ' ');
    let fence = match parts.next()? {
        "-" => entry.revision,
        n => n.parse().ok()?,
    };
    let ttl = Duration::from_millis(parts.next()?.parse().ok()?);
    let own_time: i128 = parts.next()?.parse().ok()?;
    Some(Lease {
        fence,
        ttl,
        written: entry.written.unwrap_or(own_time),
        owner: parts.next()?.to_owned(),
    })
}

/// `impl Locks` for a public backend type whose `inner` is an
/// `Arc<Revisioned<_>>`.
macro_rules! locks_on_revisions {
    ($backend:ty, $name:literal) => {
        impl $crate::sync::Locks for $backend {
            fn name(&self) -> &'static str {
                $name
            }

            fn acquire<'a>(
                &'a self,
                name: &'a str,
                owner: &'a str,
                ttl: ::std::time::Duration,
            ) -> ::futures_util::future::BoxFuture<'a, Result<Option<u64>, $crate::sync::SyncError>>
            {
                Box::pin(self.inner.acquire(name, owner, ttl))
            }

            fn renew<'a>(
                &'a self,
                name: &'a str,
                owner: &'a str,
                fence: u64,
                ttl: ::std::time::Duration,
            ) -> ::futures_util::future::BoxFuture<'a, Result<bool, $crate::sync::SyncError>> {
                Box::pin(self.inner.renew(name, owner, fence, ttl))
            }

            fn release<'a>(
                &'a self,
                name: &'a str,
                owner: &'a str,
                fence: u64,
            ) -> ::futures_util::future::BoxFuture<'a, Result<bool, $crate::sync::SyncError>> {
                Box::pin(self.inner.release(name, owner, fence))
            }

            fn holder<'a>(
                &'a self,
                name: &'a str,
            ) -> ::futures_util::future::BoxFuture<
                'a,
                Result<Option<$crate::sync::Holder>, $crate::sync::SyncError>,
            > {
                Box::pin(self.inner.holder(name))
            }
        }
    };
}
pub(super) use locks_on_revisions;
