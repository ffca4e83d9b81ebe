//! The Postgres store: one table of micro's own, SQL that CockroachDB
//! also takes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls, Row, Statement};

use super::encoding::millis;
use super::sweeper::Sweeper;
use super::{
    Condition, MAX_KEY_LEN, Query, Record, SWEEP_EVERY, Store, StoreError, Write, check_key,
    check_scope, conflict, expiry,
};
use crate::codec::ContentType;

/// How many connections the pool keeps.
const POOL: usize = 4;

/// How many rows a listing with a suffix reads at a time.
const CHUNK: i64 = 256;

/// How long connecting may take before calls fail with 503.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

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

const COLUMNS: &str = "key, value, content_type, metadata, expires_at, version";

/// One pooled connection and the statements prepared on it.
#[derive(Debug)]
struct Conn {
    client: Client,
    prepared: std::sync::Mutex<HashMap<String, Statement>>,
}

/// Records in Postgres or CockroachDB (cargo feature `postgres`).
///
/// One table, `micro_store`, made on first use, holds every scope; a sweep
/// deletes expired rows from that table only. Conditional writes are
/// single statements (`INSERT … ON CONFLICT … WHERE`, `UPDATE … WHERE
/// version = …`), atomic without explicit locks. Watches are not offered
/// yet (CockroachDB has no `LISTEN`).
#[derive(Clone, Debug)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    url: String,
    config: tokio_postgres::Config,
    clients: Vec<Mutex<Option<Arc<Conn>>>>,
    next: AtomicUsize,
    schema: tokio::sync::OnceCell<()>,
    sweeper: Sweeper,
}

impl PostgresStore {
    /// A store at `url` (`postgres://user@host:port/db`), with a pool of
    /// its own.
    ///
    /// # Errors
    /// 400 for a URL the driver does not take.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("postgres URL \"{url}\": {e}")))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        Ok(Self {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                config,
                clients: (0..POOL).map(|_| Mutex::new(None)).collect(),
                next: AtomicUsize::new(0),
                schema: tokio::sync::OnceCell::new(),
                sweeper: Sweeper::new(),
            }),
        })
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable(format!("postgres at {}: {e}", self.inner.url))
    }

    fn failed(&self, e: &tokio_postgres::Error) -> StoreError {
        if e.is_closed() || e.as_db_error().is_none() {
            self.unavailable(e)
        } else {
            StoreError::Backend(format!("postgres at {}: {e}", self.inner.url))
        }
    }

    /// A connection from the pool, connecting (again) where needed; the
    /// table exists once this returns.
    async fn client(&self) -> Result<Arc<Conn>, StoreError> {
        let slot = self.inner.next.fetch_add(1, Ordering::Relaxed) % POOL;
        let client = {
            let mut held = self.inner.clients[slot].lock().await;
            match held.as_ref().filter(|c| !c.client.is_closed()) {
                Some(c) => c.clone(),
                None => {
                    let (client, connection) = self
                        .inner
                        .config
                        .connect(NoTls)
                        .await
                        .map_err(|e| self.unavailable(e))?;
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!(error = %e, "postgres connection ended");
                        }
                    });
                    let conn = Arc::new(Conn {
                        client,
                        prepared: std::sync::Mutex::default(),
                    });
                    *held = Some(conn.clone());
                    conn
                }
            }
        };
        self.inner
            .schema
            .get_or_try_init(|| async {
                client
                    .client
                    .batch_execute(SCHEMA)
                    .await
                    .map_err(|e| self.failed(&e))
            })
            .await?;
        Ok(client)
    }

    /// `sql` prepared on `conn`, once per connection: a statement sent as
    /// text would be parsed and described again on every call, a round
    /// trip more.
    async fn prepare(&self, conn: &Conn, sql: &str) -> Result<Statement, StoreError> {
        let cached = conn
            .prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sql)
            .cloned();
        if let Some(statement) = cached {
            return Ok(statement);
        }
        let statement = conn
            .client
            .prepare(sql)
            .await
            .map_err(|e| self.failed(&e))?;
        conn.prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

fn now_ms() -> i64 {
    i64::try_from(millis(SystemTime::now())).unwrap_or(i64::MAX)
}

fn record(row: &Row) -> Result<Record, StoreError> {
    let bad = |what: &str| StoreError::Backend(format!("postgres store: a row with a bad {what}"));
    let key: Vec<u8> = row.get(0);
    let key = String::from_utf8(key).map_err(|_| bad("key"))?;
    let value: Vec<u8> = row.get(1);
    let content_type: String = row.get(2);
    let metadata: String = row.get(3);
    let metadata: BTreeMap<String, String> = if metadata.is_empty() {
        BTreeMap::new()
    } else {
        serde_json::from_str(&metadata).map_err(|_| bad("metadata"))?
    };
    let expires_at: Option<i64> = row.get(4);
    let version: i64 = row.get(5);
    Ok(Record {
        key,
        value: Bytes::from(value),
        content_type: ContentType::from_header(&content_type).unwrap_or_default(),
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
            let sql = format!(
                "SELECT {COLUMNS} FROM micro_store WHERE scope = $1 AND key = $2 \
                 AND (expires_at IS NULL OR expires_at > $3)"
            );
            let row = conn
                .client
                .query_opt(
                    &self.prepare(&conn, &sql).await?,
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
            let base = format!(
                "SELECT {COLUMNS} FROM micro_store WHERE scope = $1 AND key >= $2 AND key > $3 \
                 AND key < $4 AND (expires_at IS NULL OR expires_at > $5) ORDER BY key"
            );
            let start = query.prefix.as_bytes();
            let now = now_ms();
            if query.suffix.is_empty() {
                // Everything filters in SQL: the page is SQL's too.
                let limit = query
                    .limit
                    .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
                let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
                let sql = format!("{base} LIMIT $6 OFFSET $7");
                let rows = conn
                    .client
                    .query(
                        &self.prepare(&conn, &sql).await?,
                        &[&scope, &start, &from, &end, &now, &limit, &offset],
                    )
                    .await
                    .map_err(|e| self.failed(&e))?;
                return rows.iter().map(record).collect();
            }
            // A suffix filters here, so read in chunks and page after it.
            let sql = format!("{base} LIMIT $6");
            let limit = query.limit.unwrap_or(usize::MAX);
            let (mut out, mut skipped) = (Vec::new(), 0);
            loop {
                let rows = conn
                    .client
                    .query(
                        &self.prepare(&conn, &sql).await?,
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
            let live = "(micro_store.expires_at IS NULL OR micro_store.expires_at > $7)";
            let row = match write.condition {
                Condition::Always => {
                    let sql = format!(
                        "INSERT INTO micro_store (scope, key, value, content_type, metadata, expires_at, version) \
                         VALUES ($1, $2, $3, $4, $5, $6, 1) ON CONFLICT (scope, key) DO UPDATE SET \
                         value = $3, content_type = $4, metadata = $5, expires_at = $6, \
                         version = CASE WHEN {live} THEN micro_store.version + 1 ELSE 1 END \
                         RETURNING version"
                    );
                    conn.client
                .query_opt(&self.prepare(&conn, &sql).await?, &[&scope, &key, &value, &ct, &metadata, &expires_at, &now])
                        .await
                }
                Condition::Absent => {
                    let sql = format!(
                        "INSERT INTO micro_store (scope, key, value, content_type, metadata, expires_at, version) \
                         VALUES ($1, $2, $3, $4, $5, $6, 1) ON CONFLICT (scope, key) DO UPDATE SET \
                         value = $3, content_type = $4, metadata = $5, expires_at = $6, version = 1 \
                         WHERE NOT {live} RETURNING version"
                    );
                    conn.client
                .query_opt(&self.prepare(&conn, &sql).await?, &[&scope, &key, &value, &ct, &metadata, &expires_at, &now])
                        .await
                }
                Condition::Version(v) => {
                    let sql = format!(
                        "UPDATE micro_store SET value = $3, content_type = $4, metadata = $5, \
                         expires_at = $6, version = version + 1 \
                         WHERE scope = $1 AND key = $2 AND {live} AND version = $8 RETURNING version"
                    );
                    conn.client
                        .query_opt(
                            &self.prepare(&conn, &sql).await?,
                            &[&scope, &key, &value, &ct, &metadata, &expires_at, &now, &version_arg(v)],
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
            let live = "(expires_at IS NULL OR expires_at > $3)";
            let row = match condition {
                Condition::Version(v) => {
                    let sql = format!(
                        "DELETE FROM micro_store WHERE scope = $1 AND key = $2 AND {live} \
                         AND version = $4 RETURNING version"
                    );
                    conn.client
                        .query_opt(
                            &self.prepare(&conn, &sql).await?,
                            &[&scope, &key.as_bytes(), &now, &version_arg(v)],
                        )
                        .await
                }
                _ => {
                    let sql = format!(
                        "DELETE FROM micro_store WHERE scope = $1 AND key = $2 \
                         RETURNING {live}"
                    );
                    conn.client
                        .query_opt(
                            &self.prepare(&conn, &sql).await?,
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
