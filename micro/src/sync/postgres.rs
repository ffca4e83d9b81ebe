//! Locks in Postgres: a row per lock name, leases timed by the database's
//! clock, single statements that check the holder.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio_postgres::types::ToSql;

use super::{Holder, Locks, SyncError};
use crate::backend::postgres::{PgConn, PgError, PostgresPool};

/// micro's lock table. A row outlives its lease: it keeps the last token,
/// so the next holder's is larger.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS micro_locks (
    name TEXT PRIMARY KEY,
    owner TEXT,
    fence BIGINT NOT NULL,
    expires_at TIMESTAMPTZ
)";

/// Takes the lock if it is free or its lease ran out: the new token, or no
/// row. One statement, so two takers are ordered by the row lock.
const ACQUIRE: &str = "INSERT INTO micro_locks (name, owner, fence, expires_at) \
     VALUES ($1, $2, 1, clock_timestamp() + $3::BIGINT * INTERVAL '1 millisecond') \
     ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, \
     fence = micro_locks.fence + 1, expires_at = EXCLUDED.expires_at \
     WHERE micro_locks.owner IS NULL OR micro_locks.expires_at <= clock_timestamp() \
     RETURNING fence";

/// Extends a lease that is still this holder's.
const RENEW: &str = "UPDATE micro_locks \
     SET expires_at = clock_timestamp() + $4::BIGINT * INTERVAL '1 millisecond' \
     WHERE name = $1 AND owner = $2 AND fence = $3 AND expires_at > clock_timestamp() RETURNING 1";

/// Ends a lease that is still this holder's; the row keeps its token.
const RELEASE: &str = "UPDATE micro_locks SET owner = NULL, expires_at = NULL \
     WHERE name = $1 AND owner = $2 AND fence = $3 AND expires_at > clock_timestamp() RETURNING 1";

const HOLDER: &str = "SELECT owner, fence FROM micro_locks \
     WHERE name = $1 AND owner IS NOT NULL AND expires_at > clock_timestamp()";

/// Locks in Postgres or CockroachDB (cargo feature `postgres`).
///
/// Each lock name is a row of the table `micro_locks` (made on first use),
/// holding its holder, its token and the end of its lease. Leases are
/// timed by the database's clock, so the clocks of the machines taking
/// locks need not agree. Taking, renewing and releasing are one statement
/// each, checked against the holder; a row is never deleted, so tokens
/// keep growing across holders.
#[derive(Clone, Debug)]
pub struct PostgresLocks {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Arc<PostgresPool>,
    schema: tokio::sync::OnceCell<()>,
}

impl From<PgError> for SyncError {
    fn from(e: PgError) -> Self {
        match e {
            PgError::Unavailable(text) => SyncError::Unavailable(text),
            PgError::Backend(text) => SyncError::Backend(text),
        }
    }
}

impl PostgresLocks {
    /// Locks at the Postgres server at `url` (`postgres://user@host:port/db`),
    /// on a pool of their own.
    ///
    /// # Errors
    /// 400 for a URL the driver does not take.
    pub fn new(url: &str) -> Result<Self, SyncError> {
        Ok(Self::on(
            PostgresPool::new(url).map_err(SyncError::Invalid)?,
        ))
    }

    /// Locks on `pool`, which other parts (the store) may share.
    pub(crate) fn on(pool: Arc<PostgresPool>) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                schema: tokio::sync::OnceCell::new(),
            }),
        }
    }

    /// A connection from the pool; the table exists once this returns.
    async fn conn(&self) -> Result<Arc<PgConn>, SyncError> {
        let pool = &self.inner.pool;
        let conn = pool.conn().await?;
        self.inner
            .schema
            .get_or_try_init(|| async {
                match conn.client.batch_execute(SCHEMA).await {
                    Ok(()) => Ok(()),
                    // Another process made it at the same moment.
                    Err(e) if e.code().is_some_and(|c| made_meanwhile(c.code())) => Ok(()),
                    Err(e) => Err(SyncError::from(pool.failed(&e))),
                }
            })
            .await?;
        Ok(conn)
    }

    async fn run(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, SyncError> {
        let conn = self.conn().await?;
        let pool = &self.inner.pool;
        let statement = conn.prepare(pool, sql).await?;
        (conn.client.query(&statement, params).await).map_err(|e| pool.failed(&e).into())
    }
}

/// Whether a `CREATE TABLE IF NOT EXISTS` failed only because another
/// session made the table at the same moment (a duplicate type or table).
fn made_meanwhile(code: &str) -> bool {
    matches!(code, "23505" | "42P07")
}

fn millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}

fn fence_arg(fence: u64) -> i64 {
    i64::try_from(fence).unwrap_or(i64::MAX)
}

impl Locks for PostgresLocks {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn acquire<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<u64>, SyncError>> {
        Box::pin(async move {
            let rows = self.run(ACQUIRE, &[&name, &owner, &millis(ttl)]).await?;
            Ok(rows
                .first()
                .map(|row| u64::try_from(row.get::<_, i64>(0)).unwrap_or_default()))
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
            let params: [&(dyn ToSql + Sync); 4] = [&name, &owner, &fence_arg(fence), &millis(ttl)];
            Ok(self.run(RENEW, &params).await?.len() == 1)
        })
    }

    fn release<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        fence: u64,
    ) -> BoxFuture<'a, Result<bool, SyncError>> {
        Box::pin(async move {
            let params: [&(dyn ToSql + Sync); 3] = [&name, &owner, &fence_arg(fence)];
            Ok(self.run(RELEASE, &params).await?.len() == 1)
        })
    }

    fn holder<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Holder>, SyncError>> {
        Box::pin(async move {
            let rows = self.run(HOLDER, &[&name]).await?;
            Ok(rows.first().map(|row| Holder {
                owner: row.get(0),
                fence: u64::try_from(row.get::<_, i64>(1)).unwrap_or_default(),
            }))
        })
    }
}
