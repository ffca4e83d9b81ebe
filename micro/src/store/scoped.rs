//! The handle code uses: one scope of a store, typed through micro's
//! codecs.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Condition, Query, Record, Store, Watch, Write, check_scope};
use crate::codec::ContentType;
use crate::{Error, Result};

/// One scope of a store: what a service's handlers read and write. Cheap to
/// clone.
///
/// Values are encoded with the handle's codec (JSON unless
/// [`with_content_type`](Self::with_content_type) says otherwise) and
/// decoded with the codec they were written with.
#[derive(Clone, Debug)]
pub struct Scoped {
    store: Arc<dyn Store>,
    scope: Arc<str>,
    content_type: ContentType,
}

impl Scoped {
    /// `scope` of `store`.
    ///
    /// # Errors
    /// 400 for a scope that is empty, longer than 128 bytes, or has
    /// characters other than letters, digits and `. _ - :`.
    pub fn new(store: Arc<dyn Store>, scope: &str) -> Result<Self> {
        check_scope(scope)?;
        Ok(Self {
            store,
            scope: scope.into(),
            content_type: ContentType::Json,
        })
    }

    /// Another scope of the same store: data two services share, say.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn scope(&self, scope: &str) -> Result<Self> {
        Ok(Self {
            content_type: self.content_type,
            ..Self::new(self.store.clone(), scope)?
        })
    }

    /// This handle, encoding what it writes with `content_type`.
    #[must_use]
    pub fn with_content_type(mut self, content_type: ContentType) -> Self {
        self.content_type = content_type;
        self
    }

    /// The scope's name.
    pub fn name(&self) -> &str {
        &self.scope
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The value under `key`, decoded.
    ///
    /// # Errors
    /// 404 when there is none; 400 when it is not a `T`; 503 when the
    /// backend is down.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<T> {
        self.read(key).await?.decode()
    }

    /// The record under `key`, with its version, metadata and expiry.
    ///
    /// # Errors
    /// As [`get`](Self::get), but for decoding.
    pub async fn read(&self, key: &str) -> Result<Record> {
        Ok(self.store.read(&self.scope, key).await?)
    }

    /// Writes `value` under `key`, for ever; returns the new version.
    ///
    /// # Errors
    /// 400 for a bad key or a value the codec cannot encode; 503 when the
    /// backend is down.
    pub async fn put<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<u64> {
        self.write(key, value).send().await
    }

    /// A write of `value` under `key`, to set a TTL, a condition or
    /// metadata before [`send`](WriteBuilder::send).
    pub fn write<'a, T: Serialize + ?Sized>(
        &'a self,
        key: &'a str,
        value: &'a T,
    ) -> WriteBuilder<'a, T> {
        WriteBuilder {
            scoped: self,
            key,
            value,
            ttl: None,
            condition: Condition::Always,
            metadata: std::collections::BTreeMap::new(),
            fence: None,
        }
    }

    /// Deletes the record under `key`; returns whether there was one.
    ///
    /// # Errors
    /// 400 for a bad key; 503 when the backend is down.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        Ok(self
            .store
            .delete(&self.scope, key, Condition::Always)
            .await?)
    }

    /// Deletes the record under `key` only if it is at `version`.
    ///
    /// # Errors
    /// 409 when it is not (or is gone); as [`delete`](Self::delete).
    pub async fn delete_version(&self, key: &str, version: u64) -> Result<bool> {
        Ok(self
            .store
            .delete(&self.scope, key, Condition::Version(version))
            .await?)
    }

    /// The records `query` selects, in key order.
    ///
    /// # Errors
    /// 503 when the backend is down.
    pub async fn list(&self, query: &Query) -> Result<Vec<Record>> {
        Ok(self.store.list(&self.scope, query).await?)
    }

    /// Every key beginning with `prefix`, in byte order.
    ///
    /// # Errors
    /// As [`list`](Self::list).
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        let records = self.list(&Query::prefix(prefix)).await?;
        Ok(records.into_iter().map(|r| r.key).collect())
    }

    /// The changes under `prefix` from now on.
    ///
    /// # Errors
    /// 501 on a backend that cannot watch.
    pub async fn watch(&self, prefix: &str) -> Result<Watch> {
        Ok(self.store.watch(&self.scope, prefix).await?)
    }

    /// Reads `key`, applies `f` to its value (`None` when absent) and
    /// writes the result back only if nobody wrote the key meanwhile,
    /// retrying until that holds; returns the value written.
    ///
    /// # Errors
    /// As [`get`](Self::get) and [`put`](Self::put).
    pub async fn update<T, F>(&self, key: &str, mut f: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> T,
    {
        loop {
            let (current, condition) = match self.read(key).await {
                Ok(record) => (
                    Some(record.decode::<T>()?),
                    Condition::Version(record.version),
                ),
                Err(e) if e.code() == crate::code::NOT_FOUND => (None, Condition::Absent),
                Err(e) => return Err(e),
            };
            let next = f(current);
            match self.write(key, &next).condition(condition).send().await {
                Ok(_) => return Ok(next),
                Err(e) if e.code() == crate::code::CONFLICT => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// A write being made; [`send`](Self::send) stores it.
#[derive(Debug)]
#[must_use = "a write is stored by send()"]
pub struct WriteBuilder<'a, T: ?Sized> {
    scoped: &'a Scoped,
    key: &'a str,
    value: &'a T,
    ttl: Option<Duration>,
    condition: Condition,
    metadata: std::collections::BTreeMap<String, String>,
    fence: Option<u64>,
}

/// The record metadata key that holds the fencing token of a fenced
/// write ([`WriteBuilder::fence`]).
pub const FENCE_KEY: &str = "micro.fence";

impl<T: Serialize + ?Sized> WriteBuilder<'_, T> {
    /// The record expires `ttl` from now.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Only if the key has no live record: 409 otherwise.
    pub fn if_absent(self) -> Self {
        self.condition(Condition::Absent)
    }

    /// Only if the key's record is at `version`: 409 otherwise.
    pub fn if_version(self, version: u64) -> Self {
        self.condition(Condition::Version(version))
    }

    /// When the write may happen.
    pub fn condition(mut self, condition: Condition) -> Self {
        self.condition = condition;
        self
    }

    /// Stores `key` = `value` in the record's metadata.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Only for the holder of fencing token `fence` (a
    /// [`Lock`](crate::sync::Lock)'s or a lead's) or a later one: the write
    /// is refused with 409 if the record was last written with a larger
    /// token, so a holder that was paused past its lease cannot overwrite
    /// what the next holder wrote. The token is kept in the record's
    /// metadata under [`FENCE_KEY`]. It replaces any version condition:
    /// the check and the write are one compare-and-set, retried if another
    /// write comes between them.
    pub fn fence(mut self, fence: u64) -> Self {
        self.fence = Some(fence);
        self
    }

    /// Stores the write; returns the record's new version.
    ///
    /// # Errors
    /// 409 when the condition or the fence does not hold; 400 for a bad
    /// key or a value the codec cannot encode; 503 when the backend is
    /// down.
    pub async fn send(mut self) -> Result<u64> {
        let content_type = self.scoped.content_type;
        let value = content_type
            .encode(self.value)
            .map_err(|e| Error::bad_request(format!("record \"{}\": {e}", self.key)))?;
        let Some(fence) = self.fence else {
            let mut write = Write::new(self.key, value, content_type);
            write.ttl = self.ttl;
            write.condition = self.condition;
            write.metadata = self.metadata;
            return Ok(self.scoped.store.write(&self.scoped.scope, write).await?);
        };
        self.metadata
            .insert(FENCE_KEY.to_owned(), fence.to_string());
        loop {
            let condition = match self.scoped.read(self.key).await {
                Ok(record) => {
                    let last = record.metadata.get(FENCE_KEY).and_then(|f| f.parse().ok());
                    if let Some(last) = last.filter(|last: &u64| *last > fence) {
                        return Err(Error::conflict(format!(
                            "record \"{}\" was written with fencing token {last}, later than {fence}",
                            self.key
                        )));
                    }
                    Condition::Version(record.version)
                }
                Err(e) if e.code() == crate::code::NOT_FOUND => Condition::Absent,
                Err(e) => return Err(e),
            };
            let mut write = Write::new(self.key, value.clone(), content_type);
            write.ttl = self.ttl;
            write.condition = condition;
            write.metadata = self.metadata.clone();
            match self.scoped.store.write(&self.scoped.scope, write).await {
                Ok(version) => return Ok(version),
                // Another write came between the read and this one: look
                // at its token.
                Err(super::StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
