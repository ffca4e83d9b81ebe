//! Locks in a NATS JetStream key-value bucket: a key per lock, taken and
//! renewed by compare-and-set on its revision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv;
use futures_util::future::BoxFuture;

use super::{Holder, Locks, SyncError};
use crate::backend::nats::{NatsConnection, hex};

/// The bucket every lock is a key of.
const BUCKET: &str = "micro-sync";

/// How far this machine's clock and the server's may be apart before a
/// lease could be judged over early by the server's timestamps alone.
const CLOCK_SKEW: Duration = Duration::from_secs(1);

/// How many locks' last seen revisions a backend remembers before it
/// forgets them all (and waits a lease out again).
const SEEN: usize = 16 * 1024;

/// Locks in NATS JetStream key-value (cargo feature `nats`; a server with
/// JetStream, 2.9 or later).
///
/// Each lock is a key of the bucket `micro-sync` (made on first use), its
/// name hex-encoded, holding its token, its time to live and its holder.
/// The token is the revision of the write that took the lock: revisions of
/// a bucket only grow, so every holder's token is larger than the last.
/// Taking, renewing and releasing are compare-and-set on the key's
/// revision, so only the holder renews or releases, and of two takers one
/// wins.
///
/// NATS has no server-side lease for a key (per-key TTLs are whole seconds
/// and need 2.11), so a lease ends as its waiters see it: a lock whose key
/// was not rewritten (renewed) for its time to live, timed by the waiter's
/// own monotonic clock from when it first saw that revision, is taken over.
/// Clocks need not agree for that. A waiter that first looks long after a
/// holder died also takes over at once when the server's timestamp of the
/// last renewal is more than twice the time to live plus a second old by
/// the waiter's clock; only clocks more than a second apart would shorten
/// a lease that way.
#[derive(Clone, Debug)]
pub struct NatsLocks {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    connection: Arc<NatsConnection>,
    bucket: tokio::sync::OnceCell<kv::Store>,
    /// Per lock: the revision last seen held by another, and since when.
    seen: Mutex<HashMap<String, (u64, Instant)>>,
}

/// What a held lock's key says.
struct Lease {
    fence: u64,
    ttl: Duration,
    owner: String,
}

impl NatsLocks {
    /// Locks on the NATS server at `url`, on a connection of their own.
    pub fn new(url: impl Into<String>) -> Self {
        Self::on(NatsConnection::new(url))
    }

    /// Locks over a client the caller opened.
    pub fn with_client(client: async_nats::Client) -> Self {
        Self::on(NatsConnection::from_client(client))
    }

    /// Locks on `connection`, which other parts may share.
    pub(crate) fn on(connection: Arc<NatsConnection>) -> Self {
        Self {
            inner: Arc::new(Inner {
                connection,
                bucket: tokio::sync::OnceCell::new(),
                seen: Mutex::default(),
            }),
        }
    }

    /// The bucket, made on first use.
    async fn bucket(&self) -> Result<&kv::Store, SyncError> {
        self.inner
            .bucket
            .get_or_try_init(|| async {
                let client =
                    (self.inner.connection.client().await).map_err(SyncError::Unavailable)?;
                let js = async_nats::jetstream::new(client.clone());
                if let Ok(bucket) = js.get_key_value(BUCKET).await {
                    return Ok(bucket);
                }
                js.create_key_value(kv::Config {
                    bucket: BUCKET.to_owned(),
                    history: 1,
                    description: "micro's locks".to_owned(),
                    ..Default::default()
                })
                .await
                .map_err(|e| unavailable(&e))
            })
            .await
    }

    /// The key's latest entry, if it holds a lock (not deleted).
    async fn entry(&self, key: &str) -> Result<Option<(kv::Entry, Lease)>, SyncError> {
        let entry = (self.bucket().await?.entry(key).await).map_err(|e| failed(&e))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(None);
        };
        let lease = lease(&entry).ok_or_else(|| foreign(key))?;
        Ok(Some((entry, lease)))
    }

    /// The revision of `key` while `owner` holds it with `fence`.
    async fn held(&self, key: &str, owner: &str, fence: u64) -> Result<Option<u64>, SyncError> {
        Ok(self
            .entry(key)
            .await?
            .filter(|(_, lease)| lease.owner == owner && lease.fence == fence)
            .map(|(entry, _)| entry.revision))
    }

    /// Whether `entry`'s lease has run out: this backend saw the same
    /// revision a whole time to live ago, or the server wrote it long ago.
    fn ended(&self, name: &str, entry: &kv::Entry, lease: &Lease) -> bool {
        let now = Instant::now();
        {
            let mut seen = self.inner.seen.lock().unwrap_or_else(|e| e.into_inner());
            match seen.get(name) {
                Some(&(revision, since)) if revision == entry.revision => {
                    if now.duration_since(since) >= lease.ttl {
                        return true;
                    }
                }
                _ => {
                    if seen.len() >= SEEN {
                        seen.clear();
                    }
                    seen.insert(name.to_owned(), (entry.revision, now));
                }
            }
        }
        let written = entry.created.unix_timestamp_nanos() / 1_000_000;
        let clock = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i128::try_from(d.as_millis()).unwrap_or(i128::MAX));
        let long_ago = (lease.ttl * 2 + CLOCK_SKEW).as_millis();
        clock - written > i128::try_from(long_ago).unwrap_or(i128::MAX)
    }

    fn forget(&self, name: &str) {
        (self.inner.seen.lock().unwrap_or_else(|e| e.into_inner())).remove(name);
    }
}

/// A held lock's value: its token (`-` for the revision of this very
/// write), its time to live in milliseconds and its holder.
fn value(fence: Option<u64>, ttl: Duration, owner: &str) -> bytes::Bytes {
    let ms = ttl.as_millis().max(1);
    match fence {
        Some(fence) => format!("{fence} {ms} {owner}"),
        None => format!("- {ms} {owner}"),
    }
    .into()
}

fn lease(entry: &kv::Entry) -> Option<Lease> {
    let text = std::str::from_utf8(&entry.value).ok()?;
    let mut parts = text.splitn(3, ' ');
    let fence = match parts.next()? {
        "-" => entry.revision,
        n => n.parse().ok()?,
    };
    let ttl = Duration::from_millis(parts.next()?.parse().ok()?);
    Some(Lease {
        fence,
        ttl,
        owner: parts.next()?.to_owned(),
    })
}

/// A lock key that holds what micro did not write.
fn foreign(key: &str) -> SyncError {
    SyncError::Backend(format!(
        "nats locks: key {key} of bucket {BUCKET} holds something micro did not write"
    ))
}

fn unavailable(e: &impl std::fmt::Display) -> SyncError {
    SyncError::Unavailable(format!("nats locks: {e}"))
}

/// A failed read: the server did not answer in time, or refused.
fn failed(e: &kv::EntryError) -> SyncError {
    match e.kind() {
        kv::EntryErrorKind::TimedOut => unavailable(e),
        _ => SyncError::Backend(format!("nats locks: {e}")),
    }
}

/// The outcome of a compare-and-set: `Ok(None)` if another wrote first.
fn written(result: Result<u64, kv::UpdateError>) -> Result<Option<u64>, SyncError> {
    match result {
        Ok(revision) => Ok(Some(revision)),
        Err(e) => match e.kind() {
            kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            kv::UpdateErrorKind::TimedOut => Err(unavailable(&e)),
            _ => Err(SyncError::Backend(format!("nats locks: {e}"))),
        },
    }
}

impl Locks for NatsLocks {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn acquire<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<u64>, SyncError>> {
        Box::pin(async move {
            let key = hex(name);
            let bucket = self.bucket().await?;
            let entry = (bucket.entry(&key).await).map_err(|e| failed(&e))?;
            let taken = match entry {
                None => match bucket.create(&key, value(None, ttl, owner)).await {
                    Ok(revision) => Some(revision),
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => None,
                    Err(e) => return Err(SyncError::Backend(format!("nats locks: {e}"))),
                },
                Some(entry) => {
                    if entry.operation == kv::Operation::Put {
                        let lease = lease(&entry).ok_or_else(|| foreign(&key))?;
                        if !self.ended(name, &entry, &lease) {
                            return Ok(None);
                        }
                    }
                    written((bucket.update(&key, value(None, ttl, owner), entry.revision)).await)?
                }
            };
            if taken.is_some() {
                self.forget(name);
            }
            Ok(taken)
        })
    }

    fn renew<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        fence: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, SyncError>> {
        Box::pin(async move {
            let key = hex(name);
            let bucket = self.bucket().await?;
            // A write between the read and the compare-and-set (a release
            // racing this renewal) is read again: the lease is renewed only
            // if this holder still has it.
            loop {
                let Some(revision) = self.held(&key, owner, fence).await? else {
                    return Ok(false);
                };
                let update = bucket.update(&key, value(Some(fence), ttl, owner), revision);
                if written(update.await)?.is_some() {
                    return Ok(true);
                }
            }
        })
    }

    fn release<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        fence: u64,
    ) -> BoxFuture<'a, Result<bool, SyncError>> {
        Box::pin(async move {
            let key = hex(name);
            let bucket = self.bucket().await?;
            // The holder's own renewal can rewrite the key between the read
            // and the delete: read again, and release while still held.
            loop {
                let Some(revision) = self.held(&key, owner, fence).await? else {
                    return Ok(false);
                };
                let delete = bucket.delete_expect_revision(&key, Some(revision));
                if written(delete.await.map(|()| revision))?.is_some() {
                    return Ok(true);
                }
            }
        })
    }

    fn holder<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Holder>, SyncError>> {
        Box::pin(async move {
            let Some((entry, lease)) = self.entry(&hex(name)).await? else {
                return Ok(None);
            };
            if self.ended(name, &entry, &lease) {
                return Ok(None);
            }
            Ok(Some(Holder {
                owner: lease.owner,
                fence: lease.fence,
            }))
        })
    }
}
