//! Watches on Postgres: a trigger that `NOTIFY`s each change as its
//! transaction commits, and one `LISTEN`ing connection per store.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::{Mutex, mpsc};
use tokio_postgres::{AsyncMessage, Client};

use super::{Inner, PostgresStore, build};
use crate::store::changes::Changes;
use crate::store::{Change, StoreError};

/// The channel every change goes out on; watches filter by scope and
/// prefix.
const CHANNEL: &str = "micro_store";

/// How often an idle listener checks that someone still watches.
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// How many notifications wait between the connection and the task that
/// turns them into changes; past that, Postgres holds them in its queue.
const BACKLOG: usize = 1024;

/// The trigger function: the change's kind, scope, key and version, and
/// the whole record when the notification stays under Postgres's 8000
/// byte limit. A deleted row that had already expired is an expiry (the
/// sweep's deletes are those).
///
/// Only scopes that someone watches are notified: a transaction that
/// notifies holds a lock across its commit, so notifying writes commit one
/// at a time (no group commit) and are about three times slower. Each
/// listening connection lists its scopes in `micro_store_listeners`; rows
/// of connections that are gone are cleared whenever a listener starts or
/// stops.
const TRIGGER: &str = r#"
CREATE TABLE IF NOT EXISTS micro_store_listeners (
    scope TEXT NOT NULL,
    pid INT NOT NULL,
    PRIMARY KEY (scope, pid)
);
CREATE OR REPLACE FUNCTION micro_store_notify() RETURNS trigger AS $fn$
DECLARE
    r micro_store;
    kind TEXT;
    body JSONB;
    full_body JSONB;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
        IF OLD.expires_at IS NOT NULL
           AND OLD.expires_at <= (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT THEN
            kind := 'E';
        ELSE
            kind := 'D';
        END IF;
    ELSE
        r := NEW;
        kind := 'P';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM micro_store_listeners WHERE scope = r.scope) THEN
        RETURN NULL;
    END IF;
    body := jsonb_build_object('o', kind, 's', r.scope, 'k', encode(r.key, 'hex'), 'v', r.version);
    IF kind = 'P' AND octet_length(r.value) + octet_length(r.metadata) < 3500 THEN
        full_body := body || jsonb_build_object('d', encode(r.value, 'hex'),
            'c', r.content_type, 'm', r.metadata, 'x', r.expires_at);
        IF octet_length(full_body::text) < 7900 THEN
            body := full_body;
        END IF;
    END IF;
    PERFORM pg_notify('micro_store', body::text);
    RETURN NULL;
END
$fn$ LANGUAGE plpgsql;
DO $do$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgname = 'micro_store_notify' AND tgrelid = 'micro_store'::regclass) THEN
        CREATE TRIGGER micro_store_notify AFTER INSERT OR UPDATE OR DELETE ON micro_store
            FOR EACH ROW EXECUTE FUNCTION micro_store_notify();
    END IF;
END $do$;
"#;

/// The table and the trigger in one transaction, under an advisory lock so
/// that processes starting together do not race to make them.
pub(super) fn setup(schema: &str) -> String {
    format!("BEGIN; SELECT pg_advisory_xact_lock(7020358452710401); {schema}; {TRIGGER} COMMIT;")
}

/// Clears the scopes of listening connections that have gone.
const CLEAR_GONE: &str =
    "DELETE FROM micro_store_listeners WHERE pid NOT IN (SELECT pid FROM pg_stat_activity)";

/// One store's `LISTEN`ing connection, while someone watches.
#[derive(Debug, Default)]
pub(super) struct Listener {
    active: Mutex<Option<Active>>,
}

#[derive(Debug)]
struct Active {
    client: Arc<Client>,
    /// Held strongly by the task that feeds it.
    changes: Weak<Changes>,
    /// The scopes this connection is listed for.
    scopes: HashSet<String>,
}

impl Listener {
    /// The changes every watch of `store` reads, `LISTEN`ing first if no
    /// connection is, and listed for `scope`: once this returns, every
    /// committed change in `scope` reaches them.
    pub(super) async fn changes(
        &self,
        store: &PostgresStore,
        scope: &str,
    ) -> Result<Arc<Changes>, StoreError> {
        let mut held = self.active.lock().await;
        let live = held
            .as_ref()
            .and_then(|a| a.changes.upgrade())
            .filter(|_| held.as_ref().is_some_and(|a| !a.client.is_closed()));
        let changes = match live {
            Some(changes) => changes,
            None => {
                let (client, changes) = listen(store).await?;
                *held = Some(Active {
                    client,
                    changes: Arc::downgrade(&changes),
                    scopes: HashSet::new(),
                });
                changes
            }
        };
        let active = held.as_mut().expect("set above");
        if !active.scopes.contains(scope) {
            active
                .client
                .execute(
                    "INSERT INTO micro_store_listeners (scope, pid) VALUES ($1, pg_backend_pid()) \
                     ON CONFLICT DO NOTHING",
                    &[&scope],
                )
                .await
                .map_err(|e| store.failed(&e))?;
            active.scopes.insert(scope.to_owned());
        }
        Ok(changes)
    }
}

/// Connects and `LISTEN`s, and starts the task that feeds the changes.
async fn listen(store: &PostgresStore) -> Result<(Arc<Client>, Arc<Changes>), StoreError> {
    let (client, mut connection) = store.inner.pool.connect().await?;
    let (sender, notices) = mpsc::channel(BACKLOG);
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(|cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            let notice = match message {
                Ok(AsyncMessage::Notification(n)) => Ok(n.payload().to_owned()),
                Ok(_) => continue,
                Err(e) => Err(e.to_string()),
            };
            let failed = notice.is_err();
            if sender.send(notice).await.is_err() || failed {
                break;
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {CHANNEL}; {CLEAR_GONE}"))
        .await
        .map_err(|e| store.failed(&e))?;
    let client = Arc::new(client);
    let changes = Arc::new(Changes::new());
    tokio::spawn(feed(
        client.clone(),
        notices,
        changes.clone(),
        Arc::downgrade(&store.inner),
    ));
    Ok((client, changes))
}

/// Turns notifications into changes until the connection is lost, the
/// store is dropped or nobody watches; a lost connection is an error every
/// watch sees before it ends.
async fn feed(
    client: Arc<Client>,
    mut notices: mpsc::Receiver<Result<String, String>>,
    changes: Arc<Changes>,
    inner: Weak<Inner>,
) {
    let start = tokio::time::Instant::now() + IDLE_CHECK;
    let mut idle = tokio::time::interval_at(start, IDLE_CHECK);
    loop {
        tokio::select! {
            notice = notices.recv() => {
                let Some(inner) = inner.upgrade() else { return };
                let store = PostgresStore { inner };
                match notice {
                    Some(Ok(payload)) => match store.change(&payload).await {
                        Ok(Some((scope, change))) => changes.send(&scope, change),
                        Ok(None) => {}
                        Err(e) => changes.fail(e),
                    },
                    Some(Err(e)) => {
                        changes.fail(StoreError::from(store.inner.pool.unavailable(format!("the watch connection was lost ({e}); watch again"))));
                        return;
                    }
                    None => {
                        changes.fail(StoreError::from(store.inner.pool.unavailable("the watch connection was lost; watch again")));
                        return;
                    }
                }
            }
            _ = idle.tick() => {
                let Some(inner) = inner.upgrade() else { return };
                // Checked under the listener's lock, so that no watch
                // starts on these changes while they stop.
                let mut held = inner.listener.active.lock().await;
                if changes.watchers() == 0 {
                    *held = None;
                    let _ = client
                        .batch_execute(&format!(
                            "DELETE FROM micro_store_listeners WHERE pid = pg_backend_pid(); {CLEAR_GONE}"
                        ))
                        .await;
                    return;
                }
            }
        }
    }
}

/// One notification as the trigger sends it.
#[derive(Deserialize)]
struct Notice {
    /// `P`ut, `D`elete or `E`xpire.
    o: String,
    s: String,
    /// The key, hex.
    k: String,
    v: i64,
    /// The value, hex; absent when the record was too large to send.
    d: Option<String>,
    c: Option<String>,
    m: Option<String>,
    x: Option<i64>,
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |b: u8| char::from(b).to_digit(16);
    text.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [hi, lo] => Some(u8::try_from(digit(*hi)? * 16 + digit(*lo)?).ok()?),
            _ => None,
        })
        .collect()
}

impl PostgresStore {
    /// The change a notification reports, with its scope; `None` for a
    /// large record that a later change has already replaced.
    async fn change(&self, payload: &str) -> Result<Option<(String, Change)>, StoreError> {
        let bad = || StoreError::Backend(format!("postgres store: a bad notification {payload:?}"));
        let notice: Notice = serde_json::from_str(payload).map_err(|_| bad())?;
        let key = unhex(&notice.k).ok_or_else(bad)?;
        let text = || String::from_utf8(key.clone()).map_err(|_| bad());
        let change = match (notice.o.as_str(), notice.d) {
            ("D", _) => Change::Delete(text()?),
            ("E", _) => Change::Expire(text()?),
            ("P", Some(value)) => Change::Put(build(
                key,
                unhex(&value).ok_or_else(bad)?,
                notice.c.as_deref().unwrap_or_default(),
                notice.m.as_deref().unwrap_or_default(),
                notice.x,
                notice.v,
            )?),
            ("P", None) => {
                let conn = self.client().await?;
                let row = conn
                    .client
                    .query_opt(
                        &self.prepare(&conn, super::Sql::ReadVersion).await?,
                        &[&notice.s, &key, &notice.v],
                    )
                    .await
                    .map_err(|e| self.failed(&e))?;
                match row {
                    Some(row) => Change::Put(super::record(&row)?),
                    None => return Ok(None),
                }
            }
            _ => return Err(bad()),
        };
        Ok(Some((notice.s, change)))
    }
}

#[cfg(test)]
mod tests {
    use super::unhex;

    #[test]
    fn hex() {
        assert_eq!(unhex("00ff7a").unwrap(), [0, 255, 0x7a]);
        assert_eq!(unhex("").unwrap(), Vec::<u8>::new());
        assert!(unhex("0").is_none());
        assert!(unhex("zz").is_none());
    }
}
