//! Distributed locks with fencing tokens, and leader election.
//!
//! A [`Locker`] takes named locks on a [`Locks`] backend. A lock is a lease
//! with a time to live: the [`Lock`] guard renews it while held, reports
//! when it was lost, and releases it on [`unlock`](Lock::unlock) or drop.
//! Only the holder can renew or release a lock. Every acquisition gets a
//! fencing token that is larger than any earlier one for that name, so a
//! write guarded by the token can refuse a holder whose lease ran out while
//! it was paused.
//!
//! An election is a lock that each candidate keeps trying to take:
//! [`Locker::campaign`] gives a [`Leadership`] whose state says whether
//! this process leads, with its token.
//!
//! ```
//! use std::time::Duration;
//! use micro::sync::{Locker, MemoryLocks};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> micro::Result<()> {
//! let locker = Locker::new(std::sync::Arc::new(MemoryLocks::new()));
//! let lock = locker.lock("reports", Duration::from_secs(10), Duration::from_secs(1)).await?;
//! // Nobody else can take it now.
//! assert!(locker.try_lock("reports", Duration::from_secs(10)).await?.is_none());
//! let token = lock.fence();
//! lock.unlock().await?;
//! // The next holder's token is larger.
//! let again = locker.try_lock("reports", Duration::from_secs(10)).await?.unwrap();
//! assert!(again.fence() > token);
//! # Ok(()) }
//! ```
//!
//! Backends, each passing one conformance suite:
//!
//! | backend | `MICRO_SYNC` | `MICRO_SYNC_ADDRESS` | a lease ends | tokens |
//! |---|---|---|---|---|
//! | [`MemoryLocks`] (default) | `memory` | unused | by this process's clock | a counter per name |
//! | `RedisLocks` (feature `redis`) | `redis` | `redis://host:port/db` | by Redis (key expiry) | a counter key per name |
//! | `PostgresLocks` (feature `postgres`) | `postgres` | `postgres://user@host:port/db` | by the database's clock | a row per name |
//! | `NatsLocks` (feature `nats`) | `nats` | `nats://host:port` | as its waiters time it (see its docs) | the key's revision |
//!
//! [`Backends`](crate::Backends) chooses one from `MICRO_SYNC` and
//! `MICRO_SYNC_ADDRESS`, on the connection its store to the same server
//! uses.

mod election;
#[cfg(feature = "etcd")]
mod etcd;
mod lock;
mod memory;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "nats", feature = "etcd"))]
mod revisioned;
#[cfg(any(feature = "nats", feature = "etcd"))]
mod sighting;
#[cfg(any(feature = "postgres", feature = "redis"))]
mod unavailable;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

pub use election::Leadership;
#[cfg(feature = "etcd")]
pub use etcd::EtcdLocks;
pub use lock::Lock;
pub use memory::MemoryLocks;
#[cfg(feature = "nats")]
pub use nats::NatsLocks;
#[cfg(feature = "postgres")]
pub use postgres::PostgresLocks;
#[cfg(feature = "redis")]
pub use redis::RedisLocks;
#[cfg(any(feature = "postgres", feature = "redis"))]
pub(crate) use unavailable::Unavailable;

use crate::Error;
use crate::errors::code;

/// The longest lock name.
pub const MAX_NAME_LEN: usize = 200;

/// Who holds a lock, and with which token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// The holder's owner id (see [`Locker::owner`]).
    pub owner: String,
    /// The holder's fencing token.
    pub fence: u64,
}

/// What can go wrong with a lock.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// A bad name or time to live (400).
    #[error("{0}")]
    Invalid(String),
    /// The backend cannot be reached (503).
    #[error("{0}")]
    Unavailable(String),
    /// The backend failed otherwise (500).
    #[error("{0}")]
    Backend(String),
}

impl From<SyncError> for Error {
    fn from(err: SyncError) -> Self {
        let code = match &err {
            SyncError::Invalid(_) => code::BAD_REQUEST,
            SyncError::Unavailable(_) => code::UNAVAILABLE,
            SyncError::Backend(_) => code::INTERNAL,
        };
        Error::new("", code, err.to_string()).with_source(err)
    }
}

/// Leases on names: what a lock backend does. [`Locker`] builds waiting,
/// renewal and elections on top.
///
/// # Contract
/// - `acquire` takes `name` for `owner` for `ttl` if nobody holds it (or
///   its holder's lease ran out), and returns a fencing token larger than
///   every token `name` had before; `None` if someone else holds it.
/// - `renew` and `release` act only if `owner` still holds `name` with
///   `fence`, and say whether they did.
/// - A lease that is not renewed within its `ttl` ends by itself.
pub trait Locks: Send + Sync + 'static {
    /// The backend's name (`memory`, `redis`, `postgres`, `nats`).
    fn name(&self) -> &'static str;

    /// Takes `name` for `owner` if it is free; its fencing token.
    fn acquire<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<u64>, SyncError>>;

    /// Extends `owner`'s lease on `name` to `ttl` from now; `false` if it
    /// is no longer `owner`'s with `fence`.
    fn renew<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        fence: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, SyncError>>;

    /// Ends `owner`'s lease on `name`; `false` if it was not `owner`'s
    /// with `fence`.
    fn release<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        fence: u64,
    ) -> BoxFuture<'a, Result<bool, SyncError>>;

    /// Who holds `name` now, if anyone.
    fn holder<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Holder>, SyncError>>;

    /// Resolves when `name` may have become free, or after `at_most`: a
    /// waiter tries again then. The default waits `at_most`.
    fn freed<'a>(&'a self, name: &'a str, at_most: Duration) -> BoxFuture<'a, ()> {
        let _ = name;
        Box::pin(tokio::time::sleep(at_most))
    }
}

/// Takes locks and runs elections on a [`Locks`] backend. Cheap to clone.
#[derive(Clone)]
pub struct Locker {
    backend: Arc<dyn Locks>,
    owner: Arc<str>,
}

impl std::fmt::Debug for Locker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locker")
            .field("backend", &self.backend.name())
            .field("owner", &self.owner)
            .finish()
    }
}

impl Locker {
    /// A locker on `backend`, whose locks are owned by a fresh id.
    pub fn new(backend: Arc<dyn Locks>) -> Self {
        Self::with_owner(backend, crate::wire::new_id())
    }

    /// A locker whose locks name `owner` (a node id, say) as their holder,
    /// as [`Holder::owner`] shows. Each lock adds a suffix of its own, so
    /// two locks of one locker are still two owners.
    pub fn with_owner(backend: Arc<dyn Locks>, owner: impl Into<String>) -> Self {
        Self {
            backend,
            owner: owner.into().into(),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Locks> {
        &self.backend
    }

    /// The owner id this locker's locks start with.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Takes `name` for `ttl`, waiting up to `wait` for its holder to
    /// release it or lose it. The guard renews the lease every third of
    /// `ttl` while held.
    ///
    /// # Errors
    /// 408 if it is still held after `wait`; 400 for a bad name or a `ttl`
    /// under 10 ms; 503 if the backend cannot be reached.
    pub async fn lock(&self, name: &str, ttl: Duration, wait: Duration) -> crate::Result<Lock> {
        let until = tokio::time::Instant::now() + wait;
        let owner = self.lock_owner();
        let mut pause = Duration::from_millis(2);
        loop {
            if let Some(lock) = self.attempt(name, &owner, ttl).await? {
                return Ok(lock);
            }
            let now = tokio::time::Instant::now();
            if now >= until {
                return Err(Error::timeout(format!(
                    "lock \"{name}\" still held by another after {wait:?}"
                )));
            }
            let left = until - now;
            self.backend.freed(name, pause.min(left)).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Takes `name` for `ttl` if nobody holds it; `None` if someone does.
    ///
    /// # Errors
    /// As [`lock`](Self::lock), but never 408.
    pub async fn try_lock(&self, name: &str, ttl: Duration) -> crate::Result<Option<Lock>> {
        self.attempt(name, &self.lock_owner(), ttl).await
    }

    /// Who holds `name` now, if anyone.
    ///
    /// # Errors
    /// 400 for a bad name; 503 if the backend cannot be reached.
    pub async fn holder(&self, name: &str) -> crate::Result<Option<Holder>> {
        check_name(name)?;
        Ok(self.backend.holder(name).await?)
    }

    /// Campaigns for leadership of `election`: this locker keeps trying to
    /// take the lock `election:<election>` with `ttl`, and leads while it
    /// holds it. Dropping the [`Leadership`], or
    /// [`resign`](Leadership::resign), ends the campaign and hands the lead
    /// on at once.
    ///
    /// # Errors
    /// 400 for a bad name or time to live.
    pub fn campaign(&self, election: &str, ttl: Duration) -> crate::Result<Leadership> {
        let name = format!("election:{election}");
        check_name(&name)?;
        check_ttl(ttl)?;
        Ok(Leadership::start(self.clone(), name, ttl))
    }

    fn lock_owner(&self) -> String {
        let mut suffix = crate::wire::new_id();
        suffix.truncate(8);
        format!("{}/{suffix}", self.owner)
    }

    async fn attempt(&self, name: &str, owner: &str, ttl: Duration) -> crate::Result<Option<Lock>> {
        check_name(name)?;
        check_ttl(ttl)?;
        // The lease runs from before the backend took it, so this side
        // never thinks it holds the lock longer than the backend does.
        let asked = tokio::time::Instant::now();
        let Some(fence) = self.backend.acquire(name, owner, ttl).await? else {
            return Ok(None);
        };
        Ok(Some(Lock::held(
            self.backend.clone(),
            (name.to_owned(), owner.to_owned()),
            fence,
            ttl,
            asked,
        )))
    }
}

/// The shortest time to live a lock takes.
const MIN_TTL: Duration = Duration::from_millis(10);

fn check_name(name: &str) -> Result<(), SyncError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(SyncError::Invalid(format!(
            "invalid lock name \"{name}\": 1 to {MAX_NAME_LEN} bytes"
        )));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(SyncError::Invalid(format!(
            "invalid lock name \"{name}\": no spaces or control characters"
        )));
    }
    Ok(())
}

fn check_ttl(ttl: Duration) -> Result<(), SyncError> {
    if ttl < MIN_TTL {
        return Err(SyncError::Invalid(format!(
            "a lock's time to live must be at least {MIN_TTL:?}, not {ttl:?}"
        )));
    }
    Ok(())
}
