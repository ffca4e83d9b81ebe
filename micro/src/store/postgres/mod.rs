//! The Postgres store: one table of micro's own, SQL that CockroachDB
//! also takes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio_postgres::{Client, Row, Statement};

use super::encoding::millis;
use super::sweeper::Sweeper;
use super::{
    Condition, MAX_KEY_LEN, Query, Record, SWEEP_EVERY, Store, StoreError, Watch, Write, check_key,
    check_scope, conflict, expiry,
};
use crate::backend::postgres::{PgConn, PgError, PostgresPool};
use crate::codec::ContentType;

mod watch;

/// How many rows a listing with a suffix reads at a time.
const CHUNK: i64 = 256;

/// micro's table: keys as bytes, so that both Postgres and CockroachDB
/// order them byte by byte whatever the collation, and no pattern (`LIKE`)
/// is ever built from a key.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS micro_store (
    scope TEXT NOT NULL,
    key BYTEA NOT NULL,
    value BYTEA NOT NULL,
    content_type TEXT NOT NULL,
    metadata TEXT NOT NULL,
    expires_at BIGINT,
    version BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
)";

/// The columns a record is read from, in [`build`]'s order.
macro_rules! columns {
    () => {
        "key, value, content_type, metadata, expires_at, version"
    };
}

/// Every statement the store runs, prepared once per connection: a
/// statement sent as text would be parsed and described again on every
/// call, a round trip more.
#[derive(Clone, Copy, Debug)]
enum Sql {
    Read,
    ReadVersion,
    List,
    ListChunk,
    WriteAlways,
    WriteAbsent,
    WriteVersion,
    Delete,
    DeleteVersion,
}

impl Sql {
    fn text(self) -> &'static str {
        macro_rules! list {
            () => {
                concat!(
                    "SELECT ",
                    columns!(),
                    " FROM micro_store WHERE scope = $1 AND key >= $2 AND key > $3 \
                     AND key < $4 AND (expires_at IS NULL OR expires_at > $5) ORDER BY key"
                )
            };
        }
        macro_rules! insert {
            () => {
                "INSERT INTO micro_store (scope, key, value, content_type, metadata, expires_at, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, 1) ON CONFLICT (scope, key) DO UPDATE SET \
                 value = $3, content_type = $4, metadata = $5, expires_at = $6, "
            };
        }
        macro_rules! live {
            () => {
                "(micro_store.expires_at IS NULL OR micro_store.expires_at > $7)"
            };
        }
        match self {
            Sql::Read => concat!(
                "SELECT ",
                columns!(),
                " FROM micro_store WHERE scope = $1 AND key = $2 \
                 AND (expires_at IS NULL OR expires_at > $3)"
            ),
            Sql::ReadVersion => concat!(
                "SELECT ",
                columns!(),
                " FROM micro_store WHERE scope = $1 AND key = $2 AND version = $3"
            ),
            Sql::List => concat!(list!(), " LIMIT $6 OFFSET $7"),
            Sql::ListChunk => concat!(list!(), " LIMIT $6"),
            Sql::WriteAlways => concat!(
                insert!(),
                "version = CASE WHEN ",
                live!(),
                " THEN micro_store.version + 1 ELSE 1 END RETURNING version"
            ),
            Sql::WriteAbsent => concat!(
                insert!(),
                "version = 1 WHERE NOT ",
                live!(),
                " RETURNING version"
            ),
            Sql::WriteVersion => concat!(
                "UPDATE micro_store SET value = $3, content_type = $4, metadata = $5, \
                 expires_at = $6, version = version + 1 \
                 WHERE scope = $1 AND key = $2 AND ",
                live!(),
                " AND version = $8 RETURNING version"
            ),
            Sql::Delete => {
                "DELETE FROM micro_store WHERE scope = $1 AND key = $2 \
                 RETURNING (expires_at IS NULL OR expires_at > $3)"
            }
            Sql::DeleteVersion => {
                "DELETE FROM micro_store WHERE scope = $1 AND key = $2 \
                 AND (expires_at IS NULL OR expires_at > $3) AND version = $4 RETURNING version"
            }
        }
    }
}

/// Records in Postgres or CockroachDB (cargo feature `postgres`).
///
/// One table, `micro_store`, made on first use, holds every scope; a sweep
/// deletes expired rows from that table only. Conditional writes are
/// single statements (`INSERT … ON CONFLICT … WHERE`, `UPDATE … WHERE
/// version = …`), atomic without explicit locks.
///
/// Watches: a trigger on the table sends each change with `NOTIFY` when
/// its transaction commits, so a watch sees every process's writes; one
/// connection per store `LISTEN`s for all its watches. A change whose
/// record is too large for a notification (about 4 KB) is read back by
/// version, and skipped if a later change has already replaced it, which
/// that later change's own notification then reports. Only watched scopes
/// are notified, and their writes are slower while watched (about 3x on a
/// busy table: notifying transactions commit one at a time). Where the trigger
/// cannot be made (CockroachDB has neither triggers of this kind nor
/// `LISTEN`), watch answers 501 with the reason and everything else works.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Arc<PostgresPool>,
    /// Made once the table exists: `Err` with the reason when watches
    /// cannot be offered.
    schema: tokio::sync::OnceCell<Result<(), String>>,
    sweeper: Sweeper,
    listener: watch::Listener,
}

impl PostgresStore {
    /// A store at `url` (`postgres://user@host:port/db`), with a pool of
    /// its own.
    ///
    /// # Errors
    /// 400 for a URL the driver does not take.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        Ok(Self::on(
            PostgresPool::new(url).map_err(StoreError::Invalid)?,
        ))
    }

    /// A store on `pool`, which other parts may share.
    pub(crate) fn on(pool: Arc<PostgresPool>) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                schema: tokio::sync::OnceCell::new(),
                sweeper: Sweeper::new(),
                listener: watch::Listener::default(),
            }),
        }
    }

    fn pool(&self) -> &PostgresPool {
        &self.inner.pool
    }

    fn failed(&self, e: &tokio_postgres::Error) -> StoreError {
        self.pool().failed(e).into()
    }

    /// A connection from the pool; the table exists once this returns.
    async fn client(&self) -> Result<Arc<PgConn>, StoreError> {
        let conn = self.pool().conn().await?;
        self.schema(&conn.client).await?;
        Ok(conn)
    }

    /// Makes the table, and the trigger that feeds watches where the
    /// database has them; `Err` inside with why watches cannot be offered.
    async fn schema(&self, client: &Client) -> Result<&Result<(), String>, StoreError> {
        self.inner
            .schema
            .get_or_try_init(|| async {
                match client.batch_execute(&watch::setup(SCHEMA)).await {
                    Ok(()) => Ok(Ok(())),
                    Err(e) if e.as_db_error().is_some() => {
                        // No triggers here (CockroachDB): the table alone.
                        let reason = format!("no watch trigger on this database: {e}");
                        client
                            .batch_execute("ROLLBACK")
                            .await
                            .map_err(|e| self.failed(&e))?;
                        client
                            .batch_execute(SCHEMA)
                            .await
                            .map_err(|e| self.failed(&e))?;
                        Ok(Err(reason))
                    }
                    Err(e) => Err(self.failed(&e)),
                }
            })
            .await
    }

    /// `sql` prepared on `conn`, once per connection.
    async fn prepare(&self, conn: &PgConn, sql: Sql) -> Result<Statement, StoreError> {
        Ok(conn.prepare(self.pool(), sql.text()).await?)
    }
}

impl From<PgError> for StoreError {
    fn from(e: PgError) -> Self {
        match e {
            PgError::Unavailable(text) => StoreError::Unavailable(text),
            PgError::Backend(text) => StoreError::Backend(text),
        }
    }
}

fn now_ms() -> i64 {
    i64::try_from(millis(SystemTime::now())).unwrap_or(i64::MAX)
}

fn record(row: &Row) -> Result<Record, StoreError> {
    build(
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
    )
}

/// A record from its columns, as a row or a notification has them.
fn build(
    key: Vec<u8>,
    value: Vec<u8>,
    content_type: &str,
    metadata: &str,
    expires_at: Option<i64>,
    version: i64,
) -> Result<Record, StoreError> {
    let bad = |what: &str| StoreError::Backend(format!("postgres store: a row with a bad {what}"));
    let key = String::from_utf8(key).map_err(|_| bad("key"))?;
    let metadata: BTreeMap<String, String> = if metadata.is_empty() {
        BTreeMap::new()
    } else {
        serde_json::from_str(metadata).map_err(|_| bad("metadata"))?
    };
    Ok(Record {
        key,
        value: Bytes::from(value),
        content_type: ContentType::from_header(content_type).unwrap_or_default(),
        metadata,
        expires_at: expires_at
            .map(|ms| UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or_default())),
        version: u64::try_from(version).unwrap_or_default(),
    })
}

/// The first byte string after every key that starts with `prefix`: UTF-8
/// has no 0xFF byte.
fn past(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    end.push(0xFF);
    end
}

fn version_arg(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store for PostgresStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn read<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Record, StoreError>> {
        Box::pin(async move {
            check_scope(scope)?;
            check_key(key, MAX_KEY_LEN)?;
            let conn = self.client().await?;
            let row = conn
                .client
                .query_opt(
                    &self.prepare(&conn, Sql::Read).await?,
                    &[&scope, &key.as_bytes(), &now_ms()],
                )
                .await
                .map_err(|e| self.failed(&e))?
                .ok_or_else(|| StoreError::NotFound(format!("record \"{key}\" not found")))?;
            record(&row)
        })
    }

    fn list<'a>(
        &'a self,
        scope: &'a str,
        query: &'a Query,
    ) -> BoxFuture<'a, Result<Vec<Record>, StoreError>> {
        Box::pin(async move {
            check_scope(scope)?;
            let conn = self.client().await?;
            let end = past(&query.prefix);
            let mut from: Vec<u8> = match &query.after {
                Some(after) if after.as_str() >= query.prefix.as_str() => after.as_bytes().to_vec(),
                _ => Vec::new(),
            };
            let start = query.prefix.as_bytes();
            let now = now_ms();
            if query.suffix.is_empty() {
                // Everything filters in SQL: the page is SQL's too.
                let limit = query
                    .limit
                    .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
                let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
                let rows = conn
                    .client
                    .query(
                        &self.prepare(&conn, Sql::List).await?,
                        &[&scope, &start, &from, &end, &now, &limit, &offset],
                    )
                    .await
                    .map_err(|e| self.failed(&e))?;
                return rows.iter().map(record).collect();
            }
            // A suffix filters here, so read in chunks and page after it.
            let limit = query.limit.unwrap_or(usize::MAX);
            let (mut out, mut skipped) = (Vec::new(), 0);
            loop {
                let rows = conn
                    .client
                    .query(
                        &self.prepare(&conn, Sql::ListChunk).await?,
                        &[&scope, &start, &from, &end, &now, &CHUNK],
                    )
                    .await
                    .map_err(|e| self.failed(&e))?;
                for row in &rows {
                    let r = record(row)?;
                    from = r.key.as_bytes().to_vec();
                    if !query.matches(&r.key) {
                        continue;
                    }
                    if skipped < query.offset {
                        skipped += 1;
                        continue;
                    }
                    out.push(r);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
                if rows.len() < CHUNK as usize {
                    return Ok(out);
                }
            }
        })
    }

    fn write<'a>(&'a self, scope: &'a str, write: Write) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            check_scope(scope)?;
            check_key(&write.key, MAX_KEY_LEN)?;
            if write.ttl.is_some() {
                let store = |inner| PostgresStore { inner };
                self.inner.sweeper.start(&self.inner, SWEEP_EVERY, store);
            }
            let conn = self.client().await?;
            let metadata = if write.metadata.is_empty() {
                String::new()
            } else {
                serde_json::to_string(&write.metadata).unwrap_or_default()
            };
            let expires_at: Option<i64> =
                expiry(write.ttl).map(|t| i64::try_from(millis(t)).unwrap_or(i64::MAX));
            let (key, value, ct) = (
                write.key.as_bytes(),
                write.value.as_ref(),
                write.content_type.as_str(),
            );
            let now = now_ms();
            let row = match write.condition {
                Condition::Always | Condition::Absent => {
                    let sql = if write.condition == Condition::Always {
                        Sql::WriteAlways
                    } else {
                        Sql::WriteAbsent
                    };
                    conn.client
                        .query_opt(
                            &self.prepare(&conn, sql).await?,
                            &[&scope, &key, &value, &ct, &metadata, &expires_at, &now],
                        )
                        .await
                }
                Condition::Version(v) => {
                    conn.client
                        .query_opt(
                            &self.prepare(&conn, Sql::WriteVersion).await?,
                            &[
                                &scope,
                                &key,
                                &value,
                                &ct,
                                &metadata,
                                &expires_at,
                                &now,
                                &version_arg(v),
                            ],
                        )
                        .await
                }
            }
            .map_err(|e| self.failed(&e))?;
            if let Some(row) = row {
                let version: i64 = row.get(0);
                return Ok(u64::try_from(version).unwrap_or_default());
            }
            let current = self.read(scope, &write.key).await.ok().map(|r| r.version);
            Err(conflict(&write.key, write.condition, current))
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
            let conn = self.client().await?;
            let now = now_ms();
            let row = match condition {
                Condition::Version(v) => {
                    conn.client
                        .query_opt(
                            &self.prepare(&conn, Sql::DeleteVersion).await?,
                            &[&scope, &key.as_bytes(), &now, &version_arg(v)],
                        )
                        .await
                }
                _ => {
                    conn.client
                        .query_opt(
                            &self.prepare(&conn, Sql::Delete).await?,
                            &[&scope, &key.as_bytes(), &now],
                        )
                        .await
                }
            }
            .map_err(|e| self.failed(&e))?;
            match (row, condition) {
                (Some(_), Condition::Version(_)) => Ok(true),
                (Some(row), _) => Ok(row.get::<_, bool>(0)),
                (None, Condition::Version(_)) => {
                    let current = self.read(scope, key).await.ok().map(|r| r.version);
                    Err(conflict(key, condition, current))
                }
                (None, _) => Ok(false),
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
            let conn = self.client().await?;
            if let Err(reason) = self.schema(&conn.client).await? {
                return Err(StoreError::Unsupported(format!(
                    "postgres at {}: {reason}",
                    self.pool().url()
                )));
            }
            let changes = self.inner.listener.changes(self, scope).await?;
            changes.watch(scope, prefix)
        })
    }

    fn sweep(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(async move {
            let conn = self.client().await?;
            let n = conn
                .client
                .execute(
                    "DELETE FROM micro_store WHERE expires_at IS NOT NULL AND expires_at <= $1",
                    &[&now_ms()],
                )
                .await
                .map_err(|e| self.failed(&e))?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }
}
