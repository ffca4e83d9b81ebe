//! Locks in Redis: a key per lock that Redis expires, a counter per lock
//! for its tokens, and scripts that check the holder.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{Holder, Locks, SyncError};
use crate::backend::redis::{RedisConnection, unreachable};

/// Takes the lock if its key is absent: the next token, or 0.
const ACQUIRE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], fence .. ' ' .. ARGV[1], 'PX', ARGV[2])
return fence
";

/// Extends the lease if the key still holds this holder: 1, else 0.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Deletes the key if it still holds this holder: 1, else 0.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Locks in Redis (cargo feature `redis`).
///
/// A held lock is the key `micro:sync:{<name>}`, holding its token and
/// owner, with the lease as the key's expiry, so Redis ends a lease nobody
/// renews. Its tokens come from the counter `micro:sync:{<name>}:fence`,
/// which is never deleted. Taking, renewing and releasing are Lua scripts,
/// so only the holder renews or releases. Both keys of a lock carry its
/// name as their hash tag and sit on one Redis Cluster node.
#[derive(Clone, Debug)]
pub struct RedisLocks {
    connection: Arc<RedisConnection>,
    scripts: Arc<Scripts>,
}

#[derive(Debug)]
struct Scripts {
    acquire: redis::Script,
    renew: redis::Script,
    release: redis::Script,
}

impl RedisLocks {
    /// Locks at the Redis server at `url` (`redis://host:port/db`), on a
    /// connection of their own.
    ///
    /// # Errors
    /// 400 for a URL Redis does not take.
    pub fn new(url: &str) -> Result<Self, SyncError> {
        Ok(Self::on(
            RedisConnection::new(url).map_err(SyncError::Invalid)?,
        ))
    }

    /// Locks on `connection`, which other parts may share.
    pub(crate) fn on(connection: Arc<RedisConnection>) -> Self {
        Self {
            connection,
            scripts: Arc::new(Scripts {
                acquire: redis::Script::new(ACQUIRE),
                renew: redis::Script::new(RENEW),
                release: redis::Script::new(RELEASE),
            }),
        }
    }

    async fn conn(&self) -> Result<redis::aio::ConnectionManager, SyncError> {
        (self.connection.manager().await).map_err(SyncError::Unavailable)
    }

    fn error(&self, e: &redis::RedisError) -> SyncError {
        let text = format!("redis locks at {}: {e}", self.connection.url());
        if unreachable(e) {
            SyncError::Unavailable(text)
        } else {
            SyncError::Backend(text)
        }
    }
}

fn key(name: &str) -> String {
    format!("micro:sync:{{{name}}}")
}

/// What the key of a held lock holds.
fn value(fence: u64, owner: &str) -> String {
    format!("{fence} {owner}")
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Locks for RedisLocks {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn acquire<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<u64>, SyncError>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            let key = key(name);
            let fence: u64 = (self.scripts.acquire)
                .key(&key)
                .key(format!("{key}:fence"))
                .arg(owner)
                .arg(millis(ttl))
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.error(&e))?;
            Ok((fence > 0).then_some(fence))
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
            let mut conn = self.conn().await?;
            let renewed: i64 = (self.scripts.renew)
                .key(key(name))
                .arg(value(fence, owner))
                .arg(millis(ttl))
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.error(&e))?;
            Ok(renewed == 1)
        })
    }

    fn release<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        fence: u64,
    ) -> BoxFuture<'a, Result<bool, SyncError>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            let released: i64 = (self.scripts.release)
                .key(key(name))
                .arg(value(fence, owner))
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.error(&e))?;
            Ok(released == 1)
        })
    }

    fn holder<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Holder>, SyncError>> {
        Box::pin(async move {
            let mut conn = self.conn().await?;
            let held: Option<String> = redis::cmd("GET")
                .arg(key(name))
                .query_async(&mut conn)
                .await
                .map_err(|e| self.error(&e))?;
            Ok(held.and_then(|v| {
                let (fence, owner) = v.split_once(' ')?;
                Some(Holder {
                    owner: owner.to_owned(),
                    fence: fence.parse().ok()?,
                })
            }))
        })
    }
}
