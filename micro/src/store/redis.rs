//! The Redis store: a hash per record, a sorted set per scope for key
//! order, Lua scripts for the conditional writes.

use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use redis::AsyncCommands;

use super::encoding::{decode, decode_shared, encode, millis};
use super::{
    Change, Condition, MAX_KEY_LEN, Query, Record, Store, StoreError, Watch, Write, check_key,
    check_scope, conflict, expiry,
};
use crate::backend::redis::RedisConnection;

/// How many index entries a listing reads at a time.
const CHUNK: usize = 256;

/// The set of scopes micro has written, so a sweep touches only micro's
/// own keys.
const SCOPES: &str = "micro:store:scopes";

/// Writes a record if its condition holds; returns `{version}` or
/// `{-1, current}`. Publishes the change for watchers.
const WRITE: &str = r#"
local cur = redis.call('HGET', KEYS[1], 'ver')
if ARGV[1] == '1' and cur then return {-1, cur} end
if ARGV[1] == '2' and cur ~= ARGV[2] then return {-1, cur or ''} end
local v = (cur and tonumber(cur) or 0) + 1
redis.call('HSET', KEYS[1], 'ver', v, 'rec', ARGV[3])
if ARGV[4] ~= '0' then redis.call('PEXPIREAT', KEYS[1], ARGV[4]) elseif cur then redis.call('PERSIST', KEYS[1]) end
redis.call('ZADD', KEYS[2], 0, ARGV[5])
redis.call('PUBLISH', KEYS[3], 'P' .. v .. ':' .. #ARGV[5] .. ':' .. ARGV[5] .. ARGV[3])
return {v, ''}
"#;

/// Deletes a record if its condition holds; returns `{1}` if it existed,
/// `{0}` if not, `{-1, current}` on a failed condition.
const DELETE: &str = r#"
local cur = redis.call('HGET', KEYS[1], 'ver')
if ARGV[1] == '2' and cur ~= ARGV[2] then return {-1, cur or ''} end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[3])
if cur then
  redis.call('PUBLISH', KEYS[3], 'D0:' .. #ARGV[3] .. ':' .. ARGV[3])
  return {1, ''}
end
return {0, ''}
"#;

/// Records in Redis (cargo feature `redis`).
///
/// Each record is a hash (`micro:store:<scope>:r:<key>`) that Redis expires
/// itself, so an expired record is never read; a sorted set per scope keeps
/// the keys in byte order for listings; conditional writes and deletes are
/// Lua scripts, atomic on the server. Watches ride on a pub/sub channel per
/// scope that the scripts publish to, so any Redis (no keyspace
/// notifications needed) serves them. The sweep removes the index entries
/// of expired records, in micro's own keys only.
#[derive(Clone, Debug)]
pub struct RedisStore {
    connection: Arc<RedisConnection>,
    write: Arc<redis::Script>,
    delete: Arc<redis::Script>,
    /// The scopes this store has listed in [`SCOPES`], once each.
    listed: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl RedisStore {
    /// A store at the Redis server at `url` (`redis://host:port/db`), on a
    /// connection of its own.
    ///
    /// # Errors
    /// 400 for a URL Redis does not take.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        Ok(Self::on(
            RedisConnection::new(url).map_err(StoreError::Invalid)?,
        ))
    }

    /// A store on `connection`, which other parts may share.
    pub(crate) fn on(connection: Arc<RedisConnection>) -> Self {
        Self {
            connection,
            write: Arc::new(redis::Script::new(WRITE)),
            delete: Arc::new(redis::Script::new(DELETE)),
            listed: Arc::default(),
        }
    }

    /// Adds `scope` to [`SCOPES`] before its first write from this store,
    /// so that the sweep knows it.
    async fn list_scope(
        &self,
        conn: &mut redis::aio::ConnectionManager,
        scope: &str,
    ) -> Result<(), StoreError> {
        let listed = || self.listed.lock().unwrap_or_else(|e| e.into_inner());
        if listed().contains(scope) {
            return Ok(());
        }
        let _: () = conn.sadd(SCOPES, scope).await.map_err(|e| self.error(&e))?;
        listed().insert(scope.to_owned());
        Ok(())
    }

    async fn conn(&self) -> Result<redis::aio::ConnectionManager, StoreError> {
        self.connection
            .manager()
            .await
            .map_err(StoreError::Unavailable)
    }

    fn error(&self, e: &redis::RedisError) -> StoreError {
        let text = format!("redis at {}: {e}", self.connection.url());
        if crate::backend::redis::unreachable(e) {
            StoreError::Unavailable(text)
        } else {
            StoreError::Backend(text)
        }
    }
}

fn record_key(scope: &str, key: &str) -> String {
    format!("micro:store:{scope}:r:{key}")
}

fn index_key(scope: &str) -> String {
    format!("micro:store:{scope}:index")
}

fn channel(scope: &str) -> String {
    format!("micro:store:{scope}:changes")
}

/// The `Conflict` from a script's `{-1, current}`.
fn refused(key: &str, condition: Condition, current: &str) -> StoreError {
    conflict(key, condition, current.parse().ok())
}

/// A record from its hash's `ver` and `rec` fields.
fn from_hash(
    key: &str,
    ver: Option<u64>,
    rec: Option<Vec<u8>>,
) -> Result<Option<Record>, StoreError> {
    let (Some(version), Some(rec)) = (ver, rec) else {
        return Ok(None);
    };
    let mut record = decode_shared(key, rec.into())?;
    record.version = version;
    // Redis expires the hash itself; this only closes the last millisecond.
    Ok((!record.has_expired()).then_some(record))
}

/// One published change: `P<ver>:<len>:<key><record>` or `D0:<len>:<key>`.
fn parse_change(payload: &[u8]) -> Option<Change> {
    let (&kind, rest) = payload.split_first()?;
    let colon = rest.iter().position(|&b| b == b':')?;
    let version: u64 = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
    let rest = &rest[colon + 1..];
    let colon = rest.iter().position(|&b| b == b':')?;
    let len: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
    let rest = &rest[colon + 1..];
    let key = std::str::from_utf8(rest.get(..len)?).ok()?.to_owned();
    match kind {
        b'P' => {
            let mut record = decode(&key, &rest[len..]).ok()?;
            record.version = version;
            Some(Change::Put(record))
        }
        b'D' => Some(Change::Delete(key)),
        b'E' => Some(Change::Expire(key)),
        _ => None,
    }
}

impl Store for RedisStore {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn read<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Record, StoreError>> {
        Box::pin(async move {
            check_scope(scope)?;
            check_key(key, MAX_KEY_LEN)?;
            let mut conn = self.conn().await?;
            let (ver, rec): (Option<u64>, Option<Vec<u8>>) = redis::cmd("HMGET")
                .arg(record_key(scope, key))
                .arg("ver")
                .arg("rec")
                .query_async(&mut conn)
                .await
                .map_err(|e| self.error(&e))?;
            from_hash(key, ver, rec)?
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
            let mut conn = self.conn().await?;
            let index = index_key(scope);
            // The index in byte order, from the later of the prefix and the
            // cursor, to the end of the prefix (UTF-8 has no 0xFF byte).
            let mut min = match &query.after {
                Some(after) if after.as_str() >= query.prefix.as_str() => format!("({after}"),
                _ => format!("[{}", query.prefix),
            }
            .into_bytes();
            let max: Vec<u8> = if query.prefix.is_empty() {
                b"+".to_vec()
            } else {
                let mut m = format!("[{}", query.prefix).into_bytes();
                m.push(0xFF);
                m
            };
            let limit = query.limit.unwrap_or(usize::MAX);
            let (mut out, mut skipped, mut dangling) = (Vec::new(), 0, Vec::new());
            'pages: loop {
                let keys: Vec<String> = redis::cmd("ZRANGE")
                    .arg(&index)
                    .arg(&min)
                    .arg(&max)
                    .arg("BYLEX")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(CHUNK)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| self.error(&e))?;
                let Some(last) = keys.last() else { break };
                min = format!("({last}").into_bytes();
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.cmd("HMGET")
                        .arg(record_key(scope, key))
                        .arg("ver")
                        .arg("rec");
                }
                let rows: Vec<(Option<u64>, Option<Vec<u8>>)> = pipe
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| self.error(&e))?;
                for (key, (ver, rec)) in keys.iter().zip(rows) {
                    if !query.matches(key) {
                        continue;
                    }
                    let Some(record) = from_hash(key, ver, rec)? else {
                        dangling.push(key.clone());
                        continue;
                    };
                    if skipped < query.offset {
                        skipped += 1;
                        continue;
                    }
                    out.push(record);
                    if out.len() >= limit {
                        break 'pages;
                    }
                }
                if keys.len() < CHUNK {
                    break;
                }
            }
            if !dangling.is_empty() {
                // Expired records' index entries: gone from the listing
                // now, from the index too.
                let _: Result<(), _> = conn.zrem(&index, dangling).await;
            }
            Ok(out)
        })
    }

    fn write<'a>(&'a self, scope: &'a str, write: Write) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            check_scope(scope)?;
            check_key(&write.key, MAX_KEY_LEN)?;
            let mut conn = self.conn().await?;
            self.list_scope(&mut conn, scope).await?;
            let expires_at = expiry(write.ttl);
            let record = Record {
                key: write.key,
                value: write.value,
                content_type: write.content_type,
                metadata: write.metadata,
                expires_at,
                version: 0,
            };
            let (kind, version) = match write.condition {
                Condition::Always => ("0", 0),
                Condition::Absent => ("1", 0),
                Condition::Version(v) => ("2", v),
            };
            let reply: (i64, String) = self
                .write
                .key(record_key(scope, &record.key))
                .key(index_key(scope))
                .key(channel(scope))
                .arg(kind)
                .arg(version)
                .arg(encode(&record))
                .arg(expires_at.map_or(0, millis))
                .arg(&record.key)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.error(&e))?;
            match reply {
                (-1, current) => Err(refused(&record.key, write.condition, &current)),
                (v, _) => Ok(u64::try_from(v).unwrap_or_default()),
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
            let mut conn = self.conn().await?;
            let (kind, version) = match condition {
                Condition::Version(v) => ("2", v),
                _ => ("0", 0),
            };
            let reply: (i64, String) = self
                .delete
                .key(record_key(scope, key))
                .key(index_key(scope))
                .key(channel(scope))
                .arg(kind)
                .arg(version)
                .arg(key)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.error(&e))?;
            match reply {
                (-1, current) => Err(refused(key, condition, &current)),
                (n, _) => Ok(n == 1),
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
            let mut pubsub = self
                .connection
                .client()
                .get_async_pubsub()
                .await
                .map_err(|e| self.error(&e))?;
            pubsub
                .subscribe(channel(scope))
                .await
                .map_err(|e| self.error(&e))?;
            let prefix = prefix.to_owned();
            let changes = pubsub.into_on_message().filter_map(move |msg| {
                let change = parse_change(msg.get_payload_bytes())
                    .filter(|c| c.key().starts_with(&prefix))
                    .map(Ok);
                std::future::ready(change)
            });
            Ok(changes.boxed())
        })
    }

    fn sweep(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            let scopes: Vec<String> = conn.smembers(SCOPES).await.map_err(|e| self.error(&e))?;
            let mut swept = 0;
            for scope in scopes {
                let index = index_key(&scope);
                let keys: Vec<String> = conn
                    .zrange(&index, 0, -1)
                    .await
                    .map_err(|e| self.error(&e))?;
                for chunk in keys.chunks(CHUNK) {
                    let mut pipe = redis::pipe();
                    for key in chunk {
                        pipe.exists(record_key(&scope, key));
                    }
                    let present: Vec<bool> = pipe
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| self.error(&e))?;
                    for (key, present) in chunk.iter().zip(present) {
                        if present {
                            continue;
                        }
                        let removed: i64 =
                            conn.zrem(&index, key).await.map_err(|e| self.error(&e))?;
                        if removed == 1 {
                            swept += 1;
                            let message = format!("E0:{}:{key}", key.len());
                            let _: Result<(), _> = conn.publish(channel(&scope), message).await;
                        }
                    }
                }
            }
            Ok(swept)
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn changes_parse() {
        let record = Record {
            key: "k:1".into(),
            value: Bytes::from_static(b"v"),
            content_type: crate::codec::ContentType::Json,
            metadata: Default::default(),
            expires_at: None,
            version: 0,
        };
        let mut payload = b"P7:3:k:1".to_vec();
        payload.extend(encode(&record));
        match parse_change(&payload) {
            Some(Change::Put(r)) => assert_eq!((r.key.as_str(), r.version), ("k:1", 7)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_change(b"D0:3:k:1"),
            Some(Change::Delete("k:1".into()))
        );
        assert_eq!(parse_change(b"E0:2:ab"), Some(Change::Expire("ab".into())));
        assert_eq!(parse_change(b"X"), None);
    }
}
