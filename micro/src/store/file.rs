//! The embedded file store: records in a redb database in a directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::BoxFuture;
use redb::{Database, ReadableTable, TableDefinition, TableHandle};

use super::SWEEP_EVERY;
use super::changes::Changes;
use super::encoding::{decode, encode, live_version};
use super::sweeper::Sweeper;
use super::{
    Change, Condition, MAX_KEY_LEN, MAX_SCOPE_LEN, Query, Record, Store, StoreError, Watch, Write,
    check_key, check_scope, conflict, expiry, holds,
};

/// What micro's tables in the database are called: this, then the scope.
const TABLE_PREFIX: &str = "micro.store.";

/// The database file inside the store's directory.
const FILE_NAME: &str = "store.redb";

/// Records in a local directory, kept across restarts with no server: an
/// embedded [redb](https://www.redb.org) database, one table per scope.
///
/// Every write is durable when it returns (redb commits with fsync), so an
/// acknowledged write survives `kill -9`. One process at a time: a second
/// one opening the same directory gets a clear error at once. Watches see
/// the changes made through this process's handle.
#[derive(Clone, Debug)]
pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    db: Database,
    changes: Changes,
    sweeper: Sweeper,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("file store: {e}"))
}

impl FileStore {
    /// Opens (or creates) the store in `dir`.
    ///
    /// # Errors
    /// 503 when the directory cannot be made or the database opened, and at
    /// once when another process has it open.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!("file store: cannot create {}: {e}", dir.display()))
        })?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Unavailable(format!(
                "file store {} is open in another process: one process at a time",
                path.display()
            )),
            e => StoreError::Unavailable(format!("file store {}: {e}", path.display())),
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                db,
                changes: Changes::new(),
                sweeper: Sweeper::new(),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs a write transaction on a blocking thread: commits fsync.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| backend(format!("write task failed: {e}")))?
    }
}

/// A scope's table name, made on the stack: no allocation for it. Scopes
/// are checked first, so the name always fits.
#[derive(Clone, Copy)]
struct TableName {
    bytes: [u8; TABLE_PREFIX.len() + MAX_SCOPE_LEN],
    len: usize,
}

impl TableName {
    fn new(scope: &str) -> Self {
        let mut bytes = [0; TABLE_PREFIX.len() + MAX_SCOPE_LEN];
        let len = TABLE_PREFIX.len() + scope.len();
        bytes[..TABLE_PREFIX.len()].copy_from_slice(TABLE_PREFIX.as_bytes());
        bytes[TABLE_PREFIX.len()..len].copy_from_slice(scope.as_bytes());
        Self { bytes, len }
    }

    fn as_str(&self) -> &str {
        // Both parts are ASCII (a checked scope): never the fallback.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or(TABLE_PREFIX)
    }
}

impl Store for FileStore {
    fn name(&self) -> &'static str {
        "file"
    }

    fn read<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Record, StoreError>> {
        Box::pin(async move {
            check_scope(scope)?;
            check_key(key, MAX_KEY_LEN)?;
            let not_found = || StoreError::NotFound(format!("record \"{key}\" not found"));
            let name = TableName::new(scope);
            let txn = self.inner.db.begin_read().map_err(backend)?;
            let definition: TableDefinition<'_, &str, &[u8]> = TableDefinition::new(name.as_str());
            let table = match txn.open_table(definition) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Err(not_found()),
                Err(e) => return Err(backend(e)),
            };
            let value = table.get(key).map_err(backend)?.ok_or_else(not_found)?;
            let record = decode(key, value.value())?;
            if record.has_expired() {
                return Err(not_found());
            }
            Ok(record)
        })
    }

    fn list<'a>(
        &'a self,
        scope: &'a str,
        query: &'a Query,
    ) -> BoxFuture<'a, Result<Vec<Record>, StoreError>> {
        Box::pin(async move {
            check_scope(scope)?;
            let name = TableName::new(scope);
            let txn = self.inner.db.begin_read().map_err(backend)?;
            let definition: TableDefinition<'_, &str, &[u8]> = TableDefinition::new(name.as_str());
            let table = match txn.open_table(definition) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(backend(e)),
            };
            let now = SystemTime::now();
            let start: &str = match &query.after {
                Some(after) if after.as_str() >= query.prefix.as_str() => after,
                _ => &query.prefix,
            };
            let mut out = Vec::new();
            let mut skipped = 0;
            let limit = query.limit.unwrap_or(usize::MAX);
            for entry in table.range(start..).map_err(backend)? {
                if out.len() >= limit {
                    break;
                }
                let (key, value) = entry.map_err(backend)?;
                let key = key.value();
                if !key.starts_with(&query.prefix) {
                    break;
                }
                if !query.matches(key) || live_version(value.value(), now).is_none() {
                    continue;
                }
                if skipped < query.offset {
                    skipped += 1;
                    continue;
                }
                out.push(decode(key, value.value())?);
            }
            Ok(out)
        })
    }

    fn write<'a>(&'a self, scope: &'a str, write: Write) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            check_scope(scope)?;
            check_key(&write.key, MAX_KEY_LEN)?;
            if write.ttl.is_some() {
                let store = |inner| FileStore { inner };
                self.inner.sweeper.start(&self.inner, SWEEP_EVERY, store);
            }
            let name = TableName::new(scope);
            let record = self
                .blocking(move |inner| {
                    let txn = inner.db.begin_write().map_err(backend)?;
                    let record = {
                        let definition: TableDefinition<'_, &str, &[u8]> =
                            TableDefinition::new(name.as_str());
                        let mut table = txn.open_table(definition).map_err(backend)?;
                        let now = SystemTime::now();
                        let current = table
                            .get(write.key.as_str())
                            .map_err(backend)?
                            .and_then(|v| live_version(v.value(), now));
                        if !holds(write.condition, current) {
                            return Err(conflict(&write.key, write.condition, current));
                        }
                        let record = Record {
                            key: write.key,
                            value: write.value,
                            content_type: write.content_type,
                            metadata: write.metadata,
                            expires_at: expiry(write.ttl),
                            version: current.unwrap_or(0) + 1,
                        };
                        table
                            .insert(record.key.as_str(), encode(&record).as_slice())
                            .map_err(backend)?;
                        record
                    };
                    txn.commit().map_err(backend)?;
                    Ok(record)
                })
                .await?;
            let version = record.version;
            self.inner.changes.send(scope, Change::Put(record));
            Ok(version)
        })
    }

    fn delete<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        condition: Condition,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            check_scope(scope)?;
            check_key(key, MAX_KEY_LEN)?;
            let (name, owned) = (TableName::new(scope), key.to_owned());
            let existed = self
                .blocking(move |inner| {
                    let txn = inner.db.begin_write().map_err(backend)?;
                    let existed = {
                        let definition: TableDefinition<'_, &str, &[u8]> =
                            TableDefinition::new(name.as_str());
                        let mut table = txn.open_table(definition).map_err(backend)?;
                        let current = table
                            .get(owned.as_str())
                            .map_err(backend)?
                            .and_then(|v| live_version(v.value(), SystemTime::now()));
                        if condition != Condition::Absent && !holds(condition, current) {
                            return Err(conflict(&owned, condition, current));
                        }
                        table.remove(owned.as_str()).map_err(backend)?;
                        current.is_some()
                    };
                    txn.commit().map_err(backend)?;
                    Ok(existed)
                })
                .await?;
            if existed {
                self.inner
                    .changes
                    .send(scope, Change::Delete(key.to_owned()));
            }
            Ok(existed)
        })
    }

    fn watch<'a>(
        &'a self,
        scope: &'a str,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Watch, StoreError>> {
        Box::pin(std::future::ready(self.inner.changes.watch(scope, prefix)))
    }

    fn sweep(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(async move {
            // Find what expired with a read; write only if there is any.
            let now = SystemTime::now();
            // Each expired record's table, scope and key.
            let mut expired: Vec<(String, String, String)> = Vec::new();
            {
                let txn = self.inner.db.begin_read().map_err(backend)?;
                for handle in txn.list_tables().map_err(backend)? {
                    let name = handle.name().to_owned();
                    let Some(scope) = name.strip_prefix(TABLE_PREFIX) else {
                        continue;
                    };
                    let definition: TableDefinition<'_, &str, &[u8]> = TableDefinition::new(&name);
                    let table = txn.open_table(definition).map_err(backend)?;
                    for entry in table.iter().map_err(backend)? {
                        let (key, value) = entry.map_err(backend)?;
                        if live_version(value.value(), now).is_none() {
                            expired.push((name.clone(), scope.to_owned(), key.value().to_owned()));
                        }
                    }
                }
            }
            if expired.is_empty() {
                return Ok(0);
            }
            let swept = self
                .blocking(move |inner| {
                    let txn = inner.db.begin_write().map_err(backend)?;
                    let mut swept = Vec::new();
                    for (name, scope, key) in expired {
                        let definition: TableDefinition<'_, &str, &[u8]> =
                            TableDefinition::new(&name);
                        let mut table = txn.open_table(definition).map_err(backend)?;
                        // Written again since the read? Then it stays.
                        let still = table
                            .get(key.as_str())
                            .map_err(backend)?
                            .is_some_and(|v| live_version(v.value(), SystemTime::now()).is_none());
                        if still {
                            table.remove(key.as_str()).map_err(backend)?;
                            swept.push((scope, key));
                        }
                    }
                    txn.commit().map_err(backend)?;
                    Ok(swept)
                })
                .await?;
            let n = swept.len();
            for (scope, key) in swept {
                self.inner.changes.send(&scope, Change::Expire(key));
            }
            Ok(n)
        })
    }
}
