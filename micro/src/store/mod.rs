//! Records: a key-value store with versions, expiry and watches.
//!
//! A [`Store`] keeps [`Record`]s (a key, a value of bytes with its content
//! type, metadata, an expiry and a version) in named scopes. A service's
//! handlers use the service's own scope ([`Context::store`](crate::Context::store));
//! two services reach shared data through an explicit scope
//! ([`Scoped::scope`]). [`Scoped`] is the handle code uses: typed reads and
//! writes through micro's codecs, listing by prefix in key order with a
//! cursor, compare-and-set, TTLs and watches.
//!
//! | backend | `MICRO_STORE` | `MICRO_STORE_ADDRESS` | watch | TTL |
//! |---|---|---|---|---|
//! | [`MemoryStore`] (default) | `memory` | unused | yes | swept every second, never returned once expired |
//! | [`FileStore`] | `file` | a directory (default `./micro-store`) | within one process | as memory |
//! | `PostgresStore` (feature `postgres`) | `postgres` | `postgres://user@host:port/db` | yes (a trigger and `NOTIFY`; 501 on CockroachDB) | swept every second; one table, `micro_store`; CockroachDB too |
//! | `NatsKvStore` (feature `nats`) | `nats` | `nats://host:4222` (JetStream, 2.10+) | yes | never returned once expired; swept every 5 s |
//! | `RedisStore` (feature `redis`) | `redis` | `redis://host:port/db` (default `redis://127.0.0.1:6379`) | yes | Redis expires each record itself |
//!
//! The guarantees every backend gives (the conformance suite checks them):
//! keys come back in byte order; a limit and an offset apply after
//! filtering; an expired record is never returned; each write returns the
//! record's new version, and a write or delete made on a version that is no
//! longer current fails with 409.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> micro::Result<()> {
//! use micro::store::{MemoryStore, Scoped};
//!
//! let todo = Scoped::new(std::sync::Arc::new(MemoryStore::new()), "todo")?;
//! let v1 = todo.put("task/1", &"write the store").await?;
//! let task: String = todo.get("task/1").await?;
//! assert_eq!(task, "write the store");
//!
//! // Only if nobody changed it meanwhile: 409 otherwise.
//! todo.write("task/1", &"write it well").if_version(v1).send().await?;
//! let stale = todo.write("task/1", &"lost update").if_version(v1).send().await;
//! assert_eq!(stale.unwrap_err().code(), 409);
//!
//! let keys = todo.keys("task/").await?;
//! assert_eq!(keys, ["task/1"]);
//! # Ok(()) }
//! ```

mod changes;
mod encoding;
mod file;
mod memory;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
mod nats;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
mod postgres;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
mod redis;
mod scoped;
mod sweeper;
mod unavailable;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

pub use file::FileStore;
pub use memory::MemoryStore;
#[cfg(feature = "nats")]
pub use nats::NatsKvStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "redis")]
pub use redis::RedisStore;
pub use scoped::{FENCE_KEY, Scoped, WriteBuilder};
pub use unavailable::Unavailable;

use crate::codec::ContentType;
use crate::{Error, code};

/// The longest key the built-in backends take, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// How often the built-in backends sweep expired records, once a record
/// with a TTL was written.
pub(crate) const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The longest scope name, in bytes.
pub const MAX_SCOPE_LEN: usize = 128;

/// One stored record.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// The key, unique within its scope.
    pub key: String,
    /// The value, as written.
    pub value: Bytes,
    /// How the value is encoded.
    pub content_type: ContentType,
    /// Free-form metadata written with the value.
    pub metadata: BTreeMap<String, String>,
    /// When the record expires, if it does.
    pub expires_at: Option<SystemTime>,
    /// Grows with every write of this key; the first write makes 1.
    pub version: u64,
}

impl Record {
    /// Decodes the value with its content type.
    ///
    /// # Errors
    /// 400 when the value is not a valid `T`.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> crate::Result<T> {
        self.content_type
            .decode(&self.value)
            .map_err(|e| Error::bad_request(format!("record \"{}\": {e}", self.key)).with_source(e))
    }

    /// Whether the record has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Whether the record has expired by now; the clock is read only for
    /// a record with an expiry.
    pub(crate) fn has_expired(&self) -> bool {
        self.expires_at.is_some_and(|at| at <= SystemTime::now())
    }
}

/// When a write or a delete may happen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Condition {
    /// Always.
    #[default]
    Always,
    /// Only if the key has no live record.
    Absent,
    /// Only if the key's live record has this version.
    Version(u64),
}

/// One write: the key, the value and how it is stored.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Write {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Bytes,
    /// How the value is encoded.
    pub content_type: ContentType,
    /// Metadata stored with the value.
    pub metadata: BTreeMap<String, String>,
    /// How long the record lives; `None` for ever.
    pub ttl: Option<Duration>,
    /// When the write may happen.
    pub condition: Condition,
}

impl Write {
    /// A write of `value` (encoded as `content_type`) to `key`, for ever,
    /// unconditionally.
    pub fn new(key: impl Into<String>, value: Bytes, content_type: ContentType) -> Self {
        Self {
            key: key.into(),
            value,
            content_type,
            metadata: BTreeMap::new(),
            ttl: None,
            condition: Condition::Always,
        }
    }
}

/// Which records a listing returns: keys with `prefix` and `suffix`, after
/// `after`, in byte order, skipping `offset` of them and returning at most
/// `limit`. Offset and limit count only records that match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Query {
    /// Keys beginning with this.
    pub prefix: String,
    /// Keys ending with this.
    pub suffix: String,
    /// Keys after this one (a cursor: the last key of the previous page).
    pub after: Option<String>,
    /// How many matching records to skip.
    pub offset: usize,
    /// The most records to return.
    pub limit: Option<usize>,
}

impl Query {
    /// Every key beginning with `prefix`.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            ..Self::default()
        }
    }

    /// Keys ending with `suffix` too.
    #[must_use]
    pub fn suffix(mut self, suffix: impl Into<String>) -> Self {
        self.suffix = suffix.into();
        self
    }

    /// Only keys after `key`.
    #[must_use]
    pub fn after(mut self, key: impl Into<String>) -> Self {
        self.after = Some(key.into());
        self
    }

    /// Skips the first `offset` matches.
    #[must_use]
    pub fn offset(mut self, offset: usize) -> Self {
        self.offset = offset;
        self
    }

    /// At most `limit` records.
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Whether `key` matches the prefix, suffix and cursor.
    pub fn matches(&self, key: &str) -> bool {
        key.starts_with(&self.prefix)
            && key.ends_with(&self.suffix)
            && self.after.as_deref().is_none_or(|after| key > after)
    }
}

/// What changed in a watched scope.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// A record was written; it is the new record.
    Put(Record),
    /// The record under this key was deleted.
    Delete(String),
    /// The record under this key expired and was swept.
    Expire(String),
}

impl Change {
    /// The key that changed.
    pub fn key(&self) -> &str {
        match self {
            Change::Put(r) => &r.key,
            Change::Delete(k) | Change::Expire(k) => k,
        }
    }
}

/// The changes under a prefix, from when the watch began.
pub type Watch = BoxStream<'static, Result<Change, StoreError>>;

/// Why a store operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No live record under the key (404).
    #[error("{0}")]
    NotFound(String),
    /// The write's or delete's condition did not hold (409).
    #[error("{0}")]
    Conflict(String),
    /// A bad key, scope or query (400).
    #[error("{0}")]
    Invalid(String),
    /// The backend cannot be reached (503).
    #[error("{0}")]
    Unavailable(String),
    /// The backend cannot do this, such as watch (501).
    #[error("{0}")]
    Unsupported(String),
    /// The backend failed otherwise (500).
    #[error("{0}")]
    Backend(String),
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        let code = match &err {
            StoreError::NotFound(_) => code::NOT_FOUND,
            StoreError::Conflict(_) => code::CONFLICT,
            StoreError::Invalid(_) => code::BAD_REQUEST,
            StoreError::Unavailable(_) => code::UNAVAILABLE,
            StoreError::Unsupported(_) => code::NOT_IMPLEMENTED,
            StoreError::Backend(_) => code::INTERNAL,
        };
        Error::new("", code, err.to_string()).with_source(err)
    }
}

/// Keeps records.
///
/// # Contract
/// - Scopes are separate: a key in one is never seen from another.
/// - `read` of a key with no live record is `NotFound`; an expired record
///   is never returned by any method.
/// - `list` returns matching live records in byte order of their keys,
///   applying offset and limit after the filter.
/// - `write` returns the record's new version, one more than the last
///   (1 for a new or expired key), and fails with `Conflict` when its
///   condition does not hold; likewise `delete` with a version.
/// - `watch` sees every change under the prefix after it returns, in the
///   order they happened to each key.
/// - Methods are called concurrently from many tasks; a conditional write
///   is atomic.
///
/// Object safe: services and handles hold an `Arc<dyn Store>`.
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// The backend's name (`memory`, `file`, …).
    fn name(&self) -> &'static str;

    /// The live record under `key` in `scope`.
    fn read<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Record, StoreError>>;

    /// The live records of `scope` that `query` selects, in key order.
    fn list<'a>(
        &'a self,
        scope: &'a str,
        query: &'a Query,
    ) -> BoxFuture<'a, Result<Vec<Record>, StoreError>>;

    /// Writes a record; returns its new version.
    fn write<'a>(&'a self, scope: &'a str, write: Write) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// Deletes the record under `key` if `condition` holds; returns whether
    /// there was a live record.
    fn delete<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        condition: Condition,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// The changes under `prefix` in `scope` from now on. The default says
    /// the backend cannot watch.
    fn watch<'a>(
        &'a self,
        scope: &'a str,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Watch, StoreError>> {
        let _ = (scope, prefix);
        Box::pin(std::future::ready(Err(StoreError::Unsupported(format!(
            "the {} store cannot watch",
            self.name()
        )))))
    }

    /// Removes expired records now; returns how many. Backends also sweep
    /// on their own; this is for tests and tools.
    fn sweep(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(std::future::ready(Ok(0)))
    }
}

fn _assert_dyn(_: &dyn Store) {}

/// Checks a scope name: non-empty, at most [`MAX_SCOPE_LEN`] bytes, of
/// letters, digits and `. _ - :`.
pub(crate) fn check_scope(scope: &str) -> Result<(), StoreError> {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
    if scope.is_empty() || scope.len() > MAX_SCOPE_LEN || !scope.chars().all(valid) {
        return Err(StoreError::Invalid(format!(
            "invalid store scope \"{scope}\": 1 to {MAX_SCOPE_LEN} letters, digits or . _ - :"
        )));
    }
    Ok(())
}

/// Checks a key: non-empty, at most `max` bytes.
pub(crate) fn check_key(key: &str, max: usize) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::Invalid("store key is empty".into()));
    }
    if key.len() > max {
        return Err(StoreError::Invalid(format!(
            "store key is {} bytes, over the limit of {max}",
            key.len()
        )));
    }
    Ok(())
}

/// The `Conflict` for a condition that did not hold.
pub(crate) fn conflict(key: &str, condition: Condition, current: Option<u64>) -> StoreError {
    StoreError::Conflict(match (condition, current) {
        (Condition::Absent, Some(v)) => {
            format!("record \"{key}\" already exists (version {v})")
        }
        (Condition::Version(want), Some(v)) => {
            format!("record \"{key}\" is at version {v}, not {want}")
        }
        (Condition::Version(want), None) => {
            format!("record \"{key}\" does not exist (expected version {want})")
        }
        _ => format!("record \"{key}\": condition failed"),
    })
}

/// Whether `condition` holds for a key whose live version is `current`.
pub(crate) fn holds(condition: Condition, current: Option<u64>) -> bool {
    match condition {
        Condition::Always => true,
        Condition::Absent => current.is_none(),
        Condition::Version(v) => current == Some(v),
    }
}

/// Applies a query's offset and limit to matches in key order.
pub(crate) fn page<T>(matches: impl Iterator<Item = T>, query: &Query) -> Vec<T> {
    matches
        .skip(query.offset)
        .take(query.limit.unwrap_or(usize::MAX))
        .collect()
}

/// When a record written now with `ttl` expires.
pub(crate) fn expiry(ttl: Option<Duration>) -> Option<SystemTime> {
    ttl.map(|ttl| SystemTime::now() + ttl)
}
