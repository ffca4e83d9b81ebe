//! A pool of Postgres connections that every part of one
//! [`Backends`](super::Backends) bundle pointing at the same URL shares.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls, Statement};

/// How many connections the pool keeps.
const POOL: usize = 4;

/// How long connecting may take before calls fail with 503.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a call on the pool failed.
#[derive(Debug)]
pub(crate) enum PgError {
    /// The server cannot be reached, or the connection broke.
    Unavailable(String),
    /// The server answered with an error.
    Backend(String),
}

/// One pooled connection and the statements prepared on it.
pub(crate) struct PgConn {
    pub(crate) client: Client,
    /// Statements by the address of their text: a statement sent as text
    /// would be parsed and described again on every call, a round trip
    /// more. A handful per part, so a list beats a map.
    prepared: std::sync::Mutex<Vec<(usize, Statement)>>,
}

impl fmt::Debug for PgConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConn")
            .field("closed", &self.client.is_closed())
            .finish_non_exhaustive()
    }
}

/// A place in the pool: the connection, and a lock held only while
/// connecting, so that calls on a live connection take no lock.
#[derive(Debug, Default)]
struct Slot {
    conn: std::sync::RwLock<Option<Arc<PgConn>>>,
    connecting: Mutex<()>,
}

/// Connections to the Postgres (or CockroachDB) server at one URL, opened
/// on first use and again when one breaks.
#[derive(Debug)]
pub(crate) struct PostgresPool {
    url: String,
    config: tokio_postgres::Config,
    slots: Vec<Slot>,
    next: AtomicUsize,
}

impl PostgresPool {
    /// A pool for `url` (`postgres://user@host:port/db`), not connected yet.
    ///
    /// # Errors
    /// Why the driver does not take the URL.
    pub(crate) fn new(url: &str) -> Result<Arc<Self>, String> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| format!("postgres URL \"{url}\": {e}"))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        Ok(Arc::new(Self {
            url: url.to_owned(),
            config,
            slots: (0..POOL).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
        }))
    }

    /// The server's URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The error for a server that could not be reached.
    pub(crate) fn unavailable(&self, e: impl fmt::Display) -> PgError {
        PgError::Unavailable(format!("postgres at {}: {e}", self.url))
    }

    /// The error for a failed call: unavailable unless the server answered.
    pub(crate) fn failed(&self, e: &tokio_postgres::Error) -> PgError {
        if e.is_closed() || e.as_db_error().is_none() {
            self.unavailable(e)
        } else {
            PgError::Backend(format!("postgres at {}: {e}", self.url))
        }
    }

    /// A connection from the pool, connecting (again) where needed.
    ///
    /// # Errors
    /// Unavailable if the server cannot be reached.
    pub(crate) async fn conn(&self) -> Result<Arc<PgConn>, PgError> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % POOL];
        let live = |slot: &Slot| {
            (slot.conn.read().unwrap_or_else(|e| e.into_inner()))
                .as_ref()
                .filter(|c| !c.client.is_closed())
                .cloned()
        };
        if let Some(conn) = live(slot) {
            return Ok(conn);
        }
        let _connecting = slot.connecting.lock().await;
        if let Some(conn) = live(slot) {
            return Ok(conn);
        }
        let (client, connection) = self.connect().await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "postgres connection ended");
            }
        });
        let conn = Arc::new(PgConn {
            client,
            prepared: std::sync::Mutex::new(Vec::new()),
        });
        *slot.conn.write().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    /// A connection of its own, outside the pool, and the half that reads
    /// from the socket (and gives notifications), which the caller runs.
    ///
    /// # Errors
    /// Unavailable if the server cannot be reached.
    pub(crate) async fn connect(&self) -> Result<(Client, Connection), PgError> {
        (self.config.connect(NoTls).await).map_err(|e| self.unavailable(e))
    }
}

/// The half of a connection that reads from its socket.
pub(crate) type Connection =
    tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>;

impl PgConn {
    /// `sql` prepared on this connection, once per connection.
    ///
    /// # Errors
    /// As the server says.
    pub(crate) async fn prepare(
        &self,
        pool: &PostgresPool,
        sql: &'static str,
    ) -> Result<Statement, PgError> {
        let at = sql.as_ptr() as usize;
        let known = |list: &Vec<(usize, Statement)>| {
            list.iter().find(|(a, _)| *a == at).map(|(_, s)| s.clone())
        };
        if let Some(s) = known(&self.prepared.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(s);
        }
        let statement = self
            .client
            .prepare(sql)
            .await
            .map_err(|e| pool.failed(&e))?;
        let mut list = self.prepared.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = known(&list) {
            return Ok(s);
        }
        list.push((at, statement.clone()));
        Ok(statement)
    }
}
