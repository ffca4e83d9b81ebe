//! Locks in a NATS JetStream key-value bucket: a key per lock, taken and
//! renewed by compare-and-set on its revision.

use std::sync::Arc;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::SyncError;
use super::revisioned::{Entry, Revisioned, Store, locks_on_revisions};
use crate::backend::nats::{NatsConnection, hex};

/// The bucket every lock is a key of.
const BUCKET: &str = "micro-sync";

/// Locks in NATS JetStream key-value (cargo feature `nats`; a server with
/// JetStream, 2.9 or later).
///
/// Each lock is a key of the bucket `micro-sync` (made on first use), its
/// name hex-encoded. The token is the revision of the write that took the
/// lock, and taking, renewing and releasing are compare-and-set on the
/// key's revision. NATS has no lease of its own for a key (per-key TTLs
/// are whole seconds and need 2.11), so a waiter judges a lease over: once
/// the key went unrenewed for a whole time to live by the waiter's
/// monotonic clock, or at once when the server's timestamp of the last
/// renewal is older than twice the time to live plus a second (only
/// clocks more than a second apart would shorten a lease that way).
#[derive(Clone, Debug)]
pub struct NatsLocks {
    inner: Arc<Revisioned<Bucket>>,
}

/// The bucket of the locks, made on first use.
#[derive(Debug)]
struct Bucket {
    connection: Arc<NatsConnection>,
    store: tokio::sync::OnceCell<kv::Store>,
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
            inner: Arc::new(Revisioned::new(Bucket {
                connection,
                store: tokio::sync::OnceCell::new(),
            })),
        }
    }
}

locks_on_revisions!(NatsLocks, "nats");

impl Bucket {
    /// The bucket, made on first use.
    async fn get(&self) -> Result<&kv::Store, SyncError> {
        self.store
            .get_or_try_init(|| async {
                let client = (self.connection.client().await).map_err(SyncError::Unavailable)?;
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
}

impl Store for Bucket {
    fn key(&self, name: &str) -> String {
        hex(name)
    }

    fn read<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Entry>, SyncError>> {
        Box::pin(async move {
            let entry = (self.get().await?.entry(key).await).map_err(|e| failed(&e))?;
            Ok(entry.map(|entry| Entry {
                // A deleted or purged key is remembered, at its revision.
                value: (entry.operation == kv::Operation::Put).then_some(entry.value),
                revision: entry.revision,
                // The server's time of the write.
                written: Some(entry.created.unix_timestamp_nanos() / 1_000_000),
            }))
        })
    }

    fn write<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        expect: Option<u64>,
    ) -> BoxFuture<'a, Result<Option<u64>, SyncError>> {
        Box::pin(async move {
            let bucket = self.get().await?;
            match expect {
                None => match bucket.create(key, value).await {
                    Ok(revision) => Ok(Some(revision)),
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
                    Err(e) => Err(SyncError::Backend(format!("nats locks: {e}"))),
                },
                Some(revision) => written(bucket.update(key, value, revision).await),
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a str, revision: u64) -> BoxFuture<'a, Result<bool, SyncError>> {
        Box::pin(async move {
            let delete = self
                .get()
                .await?
                .delete_expect_revision(key, Some(revision));
            Ok(written(delete.await.map(|()| revision))?.is_some())
        })
    }

    fn foreign(&self, key: &str) -> SyncError {
        SyncError::Backend(format!(
            "nats locks: key {key} of bucket {BUCKET} holds something micro did not write"
        ))
    }
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
