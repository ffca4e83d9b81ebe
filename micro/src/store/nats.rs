//! The NATS KV store: a bucket per scope, compare-and-set on revisions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;

use super::encoding::{decode, decode_shared, encode, live_version};
use super::sweeper::Sweeper;
use super::{
    Change, Condition, MAX_KEY_LEN, Query, Record, Store, StoreError, Watch, Write, check_key,
    check_scope, conflict, expiry, holds,
};
use crate::backend::nats::{NatsConnection, hex};

/// Records in NATS JetStream key-value buckets (cargo feature `nats`; a
/// server with JetStream, 2.10 or later).
///
/// Each scope is a bucket of its own (`micro-store-<scope>`, made on first
/// use) and each key is stored hex-encoded, so that any key (unicode, `*`,
/// `.`, `>`) is a valid NATS key and hex order is byte order. A record's
/// version is micro's own counter, kept in the value; conditional writes
/// are compare-and-set on the KV revision, retried when another writer got
/// there first. Expiry is micro's too (a server-side per-key TTL needs
/// 2.11): an expired record is never returned, and the buckets this
/// process uses are swept every 5 s once a TTL was written.
/// Listing reads the bucket's keys and sorts them: fine for thousands of
/// keys per scope, not for millions.
#[derive(Clone, Debug)]
pub struct NatsKvStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    connection: Arc<NatsConnection>,
    /// The buckets opened so far, by scope: read by every call without
    /// waiting, written once per scope.
    buckets: std::sync::RwLock<HashMap<String, Arc<Bucket>>>,
    /// Held while a bucket is looked up or made, so that a scope's bucket
    /// is made once.
    opening: tokio::sync::Mutex<()>,
    sweeper: Sweeper,
}

/// A scope's bucket, and what this process last saw of its keys.
#[derive(Debug)]
struct Bucket {
    kv: kv::Store,
    seen: std::sync::Mutex<HashMap<String, Seen>>,
    /// The largest message the server took when the bucket was opened
    /// (reading it per write would copy the whole server info each time).
    max_payload: usize,
}

/// A key's latest entry as this process last wrote or read it: enough to
/// write the next version in one round trip, as a compare-and-set on the
/// revision that fails (and is retried after a read) if anyone wrote since.
#[derive(Clone, Copy, Debug)]
struct Seen {
    revision: u64,
    version: u64,
    expires_at: Option<SystemTime>,
}

/// How many keys' latest entries a bucket remembers before it forgets
/// them all.
const SEEN: usize = 16 * 1024;

impl Bucket {
    fn seen(&self, name: &str) -> Option<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
    }

    fn saw(&self, name: &str, seen: Option<Seen>) {
        let mut map = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen {
            Some(seen) => {
                // A key seen before is updated in place: no allocation.
                if let Some(known) = map.get_mut(name) {
                    *known = seen;
                    return;
                }
                if map.len() >= SEEN {
                    map.clear();
                }
                map.insert(name.to_owned(), seen);
            }
            None => {
                map.remove(name);
            }
        }
    }
}

/// How often the buckets this process opened are swept once a record with
/// a TTL was written: a sweep reads every key, so less often than the
/// other backends.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("nats kv: {e}"))
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("nats kv: {e}"))
}

/// A scope as a bucket name: letters, digits and `-` as they are, anything
/// else as `_` and two hex digits.
fn bucket_name(scope: &str) -> String {
    let mut name = String::from("micro-store-");
    for b in scope.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("_{b:02X}"));
        }
    }
    name
}

fn unhex(name: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..name.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(name.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

impl NatsKvStore {
    /// A store on the NATS server at `url`, on a connection of its own.
    pub fn new(url: impl Into<String>) -> Self {
        Self::on(NatsConnection::new(url))
    }

    /// A store on `connection`, which other parts may share.
    pub(crate) fn on(connection: Arc<NatsConnection>) -> Self {
        Self {
            inner: Arc::new(Inner {
                connection,
                buckets: std::sync::RwLock::default(),
                opening: tokio::sync::Mutex::default(),
                sweeper: Sweeper::new(),
            }),
        }
    }

    /// The bucket of `scope`, made on first use.
    async fn bucket(&self, scope: &str) -> Result<Arc<Bucket>, StoreError> {
        let opened = || {
            let buckets = self.inner.buckets.read();
            buckets
                .unwrap_or_else(|e| e.into_inner())
                .get(scope)
                .cloned()
        };
        if let Some(b) = opened() {
            return Ok(b);
        }
        let _opening = self.inner.opening.lock().await;
        if let Some(b) = opened() {
            return Ok(b);
        }
        let client = self.inner.connection.client().await.map_err(unavailable)?;
        let js = async_nats::jetstream::new(client.clone());
        let name = bucket_name(scope);
        let bucket = match js.get_key_value(&name).await {
            Ok(b) => b,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: name.clone(),
                    history: 1,
                    ..Default::default()
                })
                .await
                .map_err(unavailable)?,
        };
        let bucket = Arc::new(Bucket {
            kv: bucket,
            seen: std::sync::Mutex::default(),
            max_payload: client.server_info().max_payload,
        });
        (self
            .inner
            .buckets
            .write()
            .unwrap_or_else(|e| e.into_inner()))
        .insert(scope.to_owned(), bucket.clone());
        Ok(bucket)
    }

    /// The key's latest entry, if it holds a value (not a delete).
    async fn entry(bucket: &kv::Store, key: &str) -> Result<Option<kv::Entry>, StoreError> {
        let entry = bucket.entry(hex(key)).await.map_err(backend)?;
        Ok(entry.filter(|e| e.operation == kv::Operation::Put))
    }
}

impl Store for NatsKvStore {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn read<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Record, StoreError>> {
        Box::pin(async move {
            check_scope(scope)?;
            check_key(key, MAX_KEY_LEN)?;
            let bucket = self.bucket(scope).await?;
            let not_found = || StoreError::NotFound(format!("record \"{key}\" not found"));
            let entry = Self::entry(&bucket.kv, key).await?.ok_or_else(not_found)?;
            let name = entry.key;
            let revision = entry.revision;
            let record = decode_shared(key, entry.value)?;
            bucket.saw(
                &name,
                Some(Seen {
                    revision,
                    version: record.version,
                    expires_at: record.expires_at,
                }),
            );
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
            let bucket = self.bucket(scope).await?;
            let mut keys: Vec<String> = Vec::new();
            let mut names = bucket.kv.keys().await.map_err(backend)?;
            while let Some(name) = names.next().await {
                let name = name.map_err(backend)?;
                if let Some(key) = unhex(&name).filter(|k| query.matches(k)) {
                    keys.push(key);
                }
            }
            keys.sort_unstable();
            let now = SystemTime::now();
            let limit = query.limit.unwrap_or(usize::MAX);
            let (mut out, mut skipped) = (Vec::new(), 0);
            for key in keys {
                if out.len() >= limit {
                    break;
                }
                let Some(entry) = Self::entry(&bucket.kv, &key).await? else {
                    continue;
                };
                let record = decode(&key, &entry.value)?;
                if record.is_expired(now) {
                    continue;
                }
                if skipped < query.offset {
                    skipped += 1;
                    continue;
                }
                out.push(record);
            }
            Ok(out)
        })
    }

    fn write<'a>(&'a self, scope: &'a str, write: Write) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            check_scope(scope)?;
            check_key(&write.key, MAX_KEY_LEN)?;
            if write.ttl.is_some() {
                let store = |inner| NatsKvStore { inner };
                self.inner.sweeper.start(&self.inner, SWEEP_EVERY, store);
            }
            let bucket = self.bucket(scope).await?;
            let name = hex(&write.key);
            // The server refuses a message over its max_payload (1 MiB
            // unless configured): say so plainly, before sending.
            let max = bucket.max_payload;
            if write.value.len() + name.len() + 256 > max {
                return Err(StoreError::Invalid(format!(
                    "record \"{}\" is {} bytes; this NATS server takes messages of up to \
                     {max} bytes (its max_payload)",
                    write.key,
                    write.value.len()
                )));
            }
            let mut record = Record {
                key: write.key.clone(),
                value: write.value,
                content_type: write.content_type,
                metadata: write.metadata,
                expires_at: expiry(write.ttl),
                version: 0,
            };
            // First a guess from what this process saw last (absent if
            // nothing): one round trip when nobody else wrote the key. A
            // guess that fails, or that says the condition does not hold,
            // is checked against the server before anything is decided.
            let now = SystemTime::now();
            let mut guess = match bucket.seen(&name) {
                Some(seen) => Some((
                    Some(seen.revision),
                    Some(seen.version).filter(|_| seen.expires_at.is_none_or(|at| at > now)),
                )),
                None if !matches!(write.condition, Condition::Version(_)) => Some((None, None)),
                None => None,
            };
            loop {
                let guessed = guess.is_some();
                let (revision, current) = match guess.take() {
                    Some(guess) => guess,
                    None => {
                        let latest = bucket.kv.entry(&name).await.map_err(backend)?;
                        let current = latest
                            .as_ref()
                            .filter(|e| e.operation == kv::Operation::Put)
                            .and_then(|e| live_version(&e.value, SystemTime::now()));
                        (latest.map(|e| e.revision), current)
                    }
                };
                if !holds(write.condition, current) {
                    if guessed {
                        continue;
                    }
                    return Err(conflict(&write.key, write.condition, current));
                }
                record.version = current.unwrap_or(0) + 1;
                let bytes = bytes::Bytes::from(encode(&record));
                let stored = match revision {
                    Some(revision) => bucket.kv.update(&name, bytes, revision).await.map_err(|e| {
                        (
                            e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                            backend(e),
                        )
                    }),
                    None => {
                        bucket.kv.create(&name, bytes).await.map_err(|e| {
                            (e.kind() == kv::CreateErrorKind::AlreadyExists, backend(e))
                        })
                    }
                };
                match stored {
                    Ok(revision) => {
                        let seen = Seen {
                            revision,
                            version: record.version,
                            expires_at: record.expires_at,
                        };
                        bucket.saw(&name, Some(seen));
                        return Ok(record.version);
                    }
                    // Another writer got there first: look again.
                    Err((true, _)) => continue,
                    Err((false, e)) => {
                        bucket.saw(&name, None);
                        return Err(e);
                    }
                }
            }
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
            let bucket = self.bucket(scope).await?;
            let name = hex(key);
            bucket.saw(&name, None);
            let bucket = &bucket.kv;
            loop {
                let Some(entry) = Self::entry(bucket, key).await? else {
                    return match condition {
                        Condition::Version(_) => Err(conflict(key, condition, None)),
                        _ => Ok(false),
                    };
                };
                let current = live_version(&entry.value, SystemTime::now());
                if condition != Condition::Absent && !holds(condition, current) {
                    return Err(conflict(key, condition, current));
                }
                match bucket
                    .delete_expect_revision(&name, Some(entry.revision))
                    .await
                {
                    Ok(()) => return Ok(current.is_some()),
                    Err(e) => {
                        let now = bucket.entry(&name).await.map_err(backend)?;
                        if now.is_some_and(|n| n.revision != entry.revision) {
                            continue;
                        }
                        return Err(backend(e));
                    }
                }
            }
        })
    }

    fn watch<'a>(
        &'a self,
        scope: &'a str,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Watch, StoreError>> {
        Box::pin(async move {
            check_scope(scope)?;
            let bucket = self.bucket(scope).await?;
            let watch = bucket.kv.watch_all().await.map_err(backend)?;
            let prefix = prefix.to_owned();
            let changes = watch.filter_map(move |entry| {
                let change = match entry {
                    Err(e) => Some(Err(backend(e))),
                    Ok(entry) => unhex(&entry.key)
                        .filter(|k| k.starts_with(&prefix))
                        .and_then(|key| match entry.operation {
                            kv::Operation::Put => decode(&key, &entry.value).ok().map(|mut r| {
                                r.key = key;
                                Ok(Change::Put(r))
                            }),
                            _ => Some(Ok(Change::Delete(key))),
                        }),
                };
                std::future::ready(change)
            });
            Ok(changes.boxed())
        })
    }

    fn sweep(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(async move {
            let buckets: Vec<Arc<Bucket>> =
                (self.inner.buckets.read().unwrap_or_else(|e| e.into_inner()))
                    .values()
                    .cloned()
                    .collect();
            let mut swept = 0;
            for bucket in buckets {
                let bucket = &bucket.kv;
                let mut names = bucket.keys().await.map_err(backend)?;
                let mut expired = Vec::new();
                while let Some(name) = names.next().await {
                    let name = name.map_err(backend)?;
                    if let Some(entry) = bucket.entry(&name).await.map_err(backend)? {
                        if entry.operation == kv::Operation::Put
                            && live_version(&entry.value, SystemTime::now()).is_none()
                        {
                            expired.push((name, entry.revision));
                        }
                    }
                }
                for (name, revision) in expired {
                    if bucket
                        .delete_expect_revision(&name, Some(revision))
                        .await
                        .is_ok()
                    {
                        swept += 1;
                    }
                }
            }
            Ok(swept)
        })
    }
}
