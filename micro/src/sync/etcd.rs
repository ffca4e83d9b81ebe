//! Locks in etcd: a key per lock, taken, renewed and released by
//! transactions that compare the key's revision.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::SyncError;
use super::revisioned::{Entry, Revisioned, Store, locks_on_revisions};
use crate::backend::etcd::{EtcdConnection, Expect};

/// Every lock's key starts with this.
const PREFIX: &str = "micro/sync/";

/// Locks in etcd (cargo feature `etcd`), over its v3 JSON API, on the
/// connection the etcd registry uses.
///
/// Each lock is the key `micro/sync/<name>`, holding its token, its time
/// to live, the time of its holder's last write (by the holder's clock)
/// and its holder. The token is the revision of the write that took the
/// lock, and taking, renewing and releasing are transactions that compare
/// the key's revision. etcd's own leases count whole seconds (two at
/// least) and would keep a dead holder's short lock far past its time to
/// live, so a waiter judges a lease over: once the key went unrewritten
/// for a whole time to live by the waiter's monotonic clock, or at once
/// when the recorded last write is older than twice the time to live plus
/// a second.
#[derive(Clone, Debug)]
pub struct EtcdLocks {
    inner: Arc<Revisioned<Keys>>,
}

/// The etcd keys of the locks.
#[derive(Debug)]
struct Keys {
    connection: Arc<EtcdConnection>,
}

impl EtcdLocks {
    /// Locks on the etcd cluster at `address` (one client URL or several,
    /// comma-separated), on a connection of their own.
    pub fn new(address: &str) -> Self {
        Self::on(EtcdConnection::new(address))
    }

    /// Locks on `connection`, which other parts may share.
    pub(crate) fn on(connection: Arc<EtcdConnection>) -> Self {
        Self {
            inner: Arc::new(Revisioned::new(Keys { connection })),
        }
    }
}

locks_on_revisions!(EtcdLocks, "etcd");

fn unavailable(e: String) -> SyncError {
    SyncError::Unavailable(format!("etcd locks: {e}"))
}

/// etcd's revisions are positive `i64`s; a lock's token is a `u64`.
fn revision(revision: i64) -> Result<u64, SyncError> {
    u64::try_from(revision)
        .map_err(|_| SyncError::Backend(format!("etcd locks: etcd wrote at revision {revision}")))
}

impl Store for Keys {
    fn key(&self, name: &str) -> String {
        format!("{PREFIX}{name}")
    }

    fn read<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Entry>, SyncError>> {
        Box::pin(async move {
            let Some(found) = self.connection.get(key).await.map_err(unavailable)? else {
                return Ok(None);
            };
            Ok(Some(Entry {
                value: Some(Bytes::from(found.value)),
                revision: revision(found.revision)?,
                // etcd keeps no time of a write: the holder's, in the value.
                written: None,
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
            let expect = match expect {
                None => Expect::Absent,
                Some(r) => Expect::Revision(i64::try_from(r).unwrap_or(i64::MAX)),
            };
            let written = self.connection.put_if(key, &value, expect).await;
            written.map_err(unavailable)?.map(revision).transpose()
        })
    }

    fn delete<'a>(&'a self, key: &'a str, revision: u64) -> BoxFuture<'a, Result<bool, SyncError>> {
        Box::pin(async move {
            let revision = i64::try_from(revision).unwrap_or(i64::MAX);
            self.connection
                .delete_if(key, revision)
                .await
                .map_err(unavailable)
        })
    }

    fn foreign(&self, key: &str) -> SyncError {
        SyncError::Backend(format!(
            "etcd locks: key {key} holds something micro did not write"
        ))
    }
}
