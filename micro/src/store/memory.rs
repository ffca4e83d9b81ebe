//! The in-process store: ordered maps behind a lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use futures_util::future::BoxFuture;

use super::changes::Changes;
use super::sweeper::Sweeper;
use super::{
    Change, Condition, MAX_KEY_LEN, Query, Record, SWEEP_EVERY, Store, StoreError, Watch, Write,
    check_key, check_scope, conflict, expiry, holds, page,
};

/// Records in this process's memory: the default, for one process and for
/// tests. Clones share the records.
///
/// Expired records are never returned and are swept every second (while a
/// Tokio runtime is running).
#[derive(Clone, Debug)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    scopes: RwLock<HashMap<String, BTreeMap<String, Record>>>,
    changes: Changes,
    sweeper: Sweeper,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                scopes: RwLock::default(),
                changes: Changes::new(),
                sweeper: Sweeper::new(),
            }),
        }
    }

    fn scopes(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, BTreeMap<String, Record>>> {
        self.inner.scopes.read().unwrap_or_else(|e| e.into_inner())
    }

    fn sweep_now(&self) -> usize {
        let now = SystemTime::now();
        let mut swept = Vec::new();
        {
            let mut scopes = self.inner.scopes.write().unwrap_or_else(|e| e.into_inner());
            for (scope, records) in scopes.iter_mut() {
                records.retain(|key, r| {
                    let live = !r.is_expired(now);
                    if !live {
                        swept.push((scope.clone(), key.clone()));
                    }
                    live
                });
            }
        }
        let n = swept.len();
        for (scope, key) in swept {
            self.inner.changes.send(&scope, Change::Expire(key));
        }
        n
    }
}

impl Store for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn read<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Record, StoreError>> {
        Box::pin(async move {
            check_scope(scope)?;
            check_key(key, MAX_KEY_LEN)?;
            let now = SystemTime::now();
            self.scopes()
                .get(scope)
                .and_then(|records| records.get(key))
                .filter(|r| !r.is_expired(now))
                .cloned()
                .ok_or_else(|| StoreError::NotFound(format!("record \"{key}\" not found")))
        })
    }

    fn list<'a>(
        &'a self,
        scope: &'a str,
        query: &'a Query,
    ) -> BoxFuture<'a, Result<Vec<Record>, StoreError>> {
        Box::pin(async move {
            check_scope(scope)?;
            let now = SystemTime::now();
            let scopes = self.scopes();
            let Some(records) = scopes.get(scope) else {
                return Ok(Vec::new());
            };
            // Start at the later of the prefix and the cursor: the map is
            // ordered, so nothing before it can match.
            let start = match &query.after {
                Some(after) if after.as_str() >= query.prefix.as_str() => {
                    std::ops::Bound::Excluded(after.clone())
                }
                _ => std::ops::Bound::Included(query.prefix.clone()),
            };
            let matches = records
                .range((start, std::ops::Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(&query.prefix))
                .filter(|(k, r)| query.matches(k) && !r.is_expired(now))
                .map(|(_, r)| r.clone());
            Ok(page(matches, query))
        })
    }

    fn write<'a>(&'a self, scope: &'a str, write: Write) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            check_scope(scope)?;
            check_key(&write.key, MAX_KEY_LEN)?;
            if write.ttl.is_some() {
                let store = |inner| MemoryStore { inner };
                self.inner.sweeper.start(&self.inner, SWEEP_EVERY, store);
            }
            let now = SystemTime::now();
            let record = {
                let mut scopes = self.inner.scopes.write().unwrap_or_else(|e| e.into_inner());
                let records = scopes.entry(scope.to_owned()).or_default();
                let current = records
                    .get(&write.key)
                    .filter(|r| !r.is_expired(now))
                    .map(|r| r.version);
                if !holds(write.condition, current) {
                    return Err(conflict(&write.key, write.condition, current));
                }
                let record = Record {
                    key: write.key.clone(),
                    value: write.value,
                    content_type: write.content_type,
                    metadata: write.metadata,
                    expires_at: expiry(write.ttl),
                    version: current.unwrap_or(0) + 1,
                };
                records.insert(write.key, record.clone());
                record
            };
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
            let now = SystemTime::now();
            let existed = {
                let mut scopes = self.inner.scopes.write().unwrap_or_else(|e| e.into_inner());
                let Some(records) = scopes.get_mut(scope) else {
                    return match condition {
                        Condition::Version(_) => Err(conflict(key, condition, None)),
                        _ => Ok(false),
                    };
                };
                let current = records
                    .get(key)
                    .filter(|r| !r.is_expired(now))
                    .map(|r| r.version);
                if condition != Condition::Absent && !holds(condition, current) {
                    return Err(conflict(key, condition, current));
                }
                records.remove(key);
                current.is_some()
            };
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
        Box::pin(async move { Ok(self.sweep_now()) })
    }
}
