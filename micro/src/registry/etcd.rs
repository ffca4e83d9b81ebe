//! A registry in etcd: a key per node under `/micro/registry/`, attached to
//! one lease per process that one task keeps alive, and a watch.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::keyed::{Known, found, merge};
use super::{Event, Record, RegisterOptions, Registry, RegistryError, Watcher};
use crate::backend::etcd::{Change, EtcdConnection};

/// Where every node's key lives.
const PREFIX: &str = "/micro/registry/";

/// A registry in etcd 3.4 or later (cargo feature `etcd`), over etcd's v3
/// JSON API on its client port.
///
/// Each node is a key, `/micro/registry/<service>/<version>/<node id>`
/// (a `/` or `%` in a part written `%2F`, `%25`), holding the node's record
/// as JSON; `etcdctl get --prefix /micro/registry/` lists them.
///
/// A registration with a TTL attaches its keys to the process's one lease,
/// which a single task keeps alive (every third of its TTL). So a process
/// killed with `SIGKILL` leaves the registry when its lease runs out, with
/// no sweeper, and a node this process stops renewing is deleted by that
/// task once its own TTL passes. If etcd loses the lease (it was down
/// longer than the TTL), the task takes a new one and writes the
/// registrations back. Lookups read the keys: no scatter/gather, no wait.
///
/// etcd raises a TTL below its minimum (about two seconds) to that minimum.
#[derive(Clone, Debug)]
pub struct EtcdRegistry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    connection: Arc<EtcdConnection>,
    state: Mutex<State>,
}

/// The process's lease, and what this registry wrote, to renew, expire
/// and write back.
#[derive(Debug, Default)]
struct State {
    lease: Option<Lease>,
    held: HashMap<String, Held>,
    keeper: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Clone, Copy, Debug)]
struct Lease {
    id: i64,
    /// The TTL asked for, in whole seconds.
    asked: u64,
    /// The TTL etcd granted (at least etcd's minimum).
    granted: Duration,
}

#[derive(Debug)]
struct Held {
    value: Vec<u8>,
    /// The registration's TTL; `None` for one that lasts until deregistered.
    ttl: Option<Duration>,
    renewed: Instant,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(keeper) = self.state.get_mut().keeper.take() {
            keeper.abort();
        }
    }
}

impl EtcdRegistry {
    /// A registry on the etcd cluster at `address`: a client URL
    /// (`http://127.0.0.1:2379`), or several, comma-separated.
    pub fn new(address: &str) -> Self {
        Self::on(EtcdConnection::new(address))
    }

    /// A registry on `connection`, which other parts may share.
    pub(crate) fn on(connection: Arc<EtcdConnection>) -> Self {
        Self {
            inner: Arc::new(Inner {
                connection,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// All nodes' records under `prefix`, one per node, and the revision
    /// read.
    async fn nodes(&self, prefix: &str) -> Result<(Vec<(String, Record)>, i64), RegistryError> {
        let (kvs, revision) = self
            .inner
            .connection
            .range(prefix)
            .await
            .map_err(RegistryError::Backend)?;
        let nodes = kvs
            .into_iter()
            .filter_map(|kv| Some((kv.key, serde_json::from_slice(&kv.value).ok()?)))
            .collect();
        Ok((nodes, revision))
    }
}

/// `part` with `%` and `/` escaped, so that it is one path segment.
fn segment(part: &str) -> String {
    part.replace('%', "%25").replace('/', "%2F")
}

/// The key of `node` of `record`.
fn key(record: &Record, node: &str) -> String {
    format!(
        "{PREFIX}{}/{}/{}",
        segment(&record.name),
        segment(&record.version),
        segment(node)
    )
}

/// Whole seconds, at least one.
fn seconds(ttl: Duration) -> u64 {
    ttl.as_secs_f64().ceil().max(1.0) as u64
}

impl Inner {
    /// A new lease of `secs`; every held registration with a TTL is moved
    /// onto it, and the old lease, if any, is revoked.
    async fn new_lease(&self, state: &mut State, secs: u64) -> Result<Lease, String> {
        let connection = &self.connection;
        let (id, granted) = connection.grant(secs).await?;
        let lease = Lease {
            id,
            asked: secs,
            granted: Duration::from_secs(granted),
        };
        for (key, held) in &state.held {
            if held.ttl.is_some() {
                connection.put(key, &held.value, id).await?;
            }
        }
        if let Some(old) = state.lease.replace(lease) {
            // Best effort: it expires by itself otherwise.
            let _ = connection.revoke(old.id).await;
        }
        Ok(lease)
    }

    /// The lease for a registration of `ttl`: the current one if it is no
    /// longer than `ttl`, else a shorter one, so that a killed process
    /// leaves within the shortest TTL it registered with.
    async fn lease_for(&self, state: &mut State, ttl: Duration) -> Result<Lease, String> {
        let secs = seconds(ttl);
        match state.lease {
            Some(lease) if lease.asked <= secs => Ok(lease),
            _ => self.new_lease(state, secs).await,
        }
    }

    /// One round of the keeper: expire what was not renewed in time, renew
    /// the lease, and take a new one if etcd lost it. Returns the time
    /// until the next round.
    async fn keep(&self) -> Duration {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        let expired: Vec<String> = state
            .held
            .iter()
            .filter(|(_, h)| h.ttl.is_some_and(|ttl| h.renewed + ttl <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            match self.connection.delete(&key).await {
                Ok(()) => {
                    state.held.remove(&key);
                }
                Err(e) => tracing::warn!(error = %e, key, "expiring a registration in etcd failed"),
            }
        }
        let Some(lease) = state.lease else {
            return Duration::from_secs(1);
        };
        let period = (lease.granted / 3).max(Duration::from_millis(200));
        match self.connection.keep_alive(lease.id).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    lease = lease.id,
                    "etcd no longer has this process's lease; registering again"
                );
                state.lease = None;
                if let Err(e) = self.new_lease(&mut state, lease.asked).await {
                    tracing::warn!(error = %e, "registering again in etcd failed; retrying");
                }
            }
            Err(e) => tracing::warn!(error = %e, "renewing the etcd lease failed; retrying"),
        }
        period
    }
}

/// Keeps the lease alive while the registry lives.
async fn keeper(inner: Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let period = strong.keep().await;
        drop(strong);
        tokio::time::sleep(period).await;
    }
}

impl Registry for EtcdRegistry {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn register<'a>(
        &'a self,
        service: &'a Record,
        options: RegisterOptions,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            super::check(service)?;
            let inner = &*self.inner;
            let mut state = inner.state.lock().await;
            for node in &service.nodes {
                let mut one = service.clone();
                one.nodes = vec![node.clone()];
                let value = serde_json::to_vec(&one)
                    .map_err(|e| RegistryError::Backend(format!("etcd: {e}")))?;
                let key = key(service, &node.id);
                let lease = match options.ttl {
                    Some(ttl) => Some(
                        inner
                            .lease_for(&mut state, ttl)
                            .await
                            .map_err(RegistryError::Backend)?,
                    ),
                    None => None,
                };
                let id = lease.map_or(0, |l| l.id);
                if let Err(e) = inner.connection.put(&key, &value, id).await {
                    // The lease ran out while etcd was away: a new one.
                    let Some(lease) = lease.filter(|_| e.contains("lease not found")) else {
                        return Err(RegistryError::Backend(e));
                    };
                    state.lease = None;
                    let lease = inner
                        .new_lease(&mut state, lease.asked)
                        .await
                        .map_err(RegistryError::Backend)?;
                    inner
                        .connection
                        .put(&key, &value, lease.id)
                        .await
                        .map_err(RegistryError::Backend)?;
                }
                state.held.insert(
                    key,
                    Held {
                        value,
                        ttl: options.ttl,
                        renewed: Instant::now(),
                    },
                );
            }
            if state.keeper.is_none() && state.lease.is_some() {
                state.keeper = Some(tokio::spawn(keeper(Arc::downgrade(&self.inner))));
            }
            Ok(())
        })
    }

    fn deregister<'a>(&'a self, service: &'a Record) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let mut state = self.inner.state.lock().await;
            for node in &service.nodes {
                let key = key(service, &node.id);
                self.inner
                    .connection
                    .delete(&key)
                    .await
                    .map_err(RegistryError::Backend)?;
                state.held.remove(&key);
            }
            // Nothing left on the lease (a graceful stop): end it now
            // rather than at its TTL.
            if !state.held.values().any(|h| h.ttl.is_some())
                && let Some(lease) = state.lease.take()
            {
                let _ = self.inner.connection.revoke(lease.id).await;
            }
            Ok(())
        })
    }

    fn get_service<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Record>, RegistryError>> {
        Box::pin(async move {
            let prefix = format!("{PREFIX}{}/", segment(name));
            let (nodes, _) = self.nodes(&prefix).await?;
            found(name, nodes.into_iter().map(|(_, r)| r).collect())
        })
    }

    fn list_services(&self) -> BoxFuture<'_, Result<Vec<Record>, RegistryError>> {
        Box::pin(async move {
            let (nodes, _) = self.nodes(PREFIX).await?;
            Ok(merge(nodes.into_iter().map(|(_, r)| r).collect()))
        })
    }

    fn watch(&self) -> BoxFuture<'_, Result<Watcher, RegistryError>> {
        Box::pin(async move {
            // What is there now, and the revision it was read at, so that
            // the watch starts just after it and misses nothing.
            let (nodes, revision) = self.nodes(PREFIX).await?;
            let mut known = Known::default();
            for (key, record) in nodes {
                known.insert(key, record);
            }
            let changes = self
                .inner
                .connection
                .watch(PREFIX, revision + 1)
                .await
                .map_err(RegistryError::Backend)?;
            let events = changes.flat_map(move |message| {
                let events: Vec<Result<Event, RegistryError>> = match message {
                    Err(e) => vec![Err(RegistryError::Backend(e))],
                    Ok(changes) => changes
                        .into_iter()
                        .filter_map(|change| match change {
                            Change::Put(kv) => {
                                let record = serde_json::from_slice(&kv.value).ok()?;
                                known.put(kv.key, record).map(Ok)
                            }
                            Change::Delete(key) => known.remove(&key).map(Ok),
                        })
                        .collect(),
                };
                futures_util::stream::iter(events)
            });
            Ok(Watcher::new(events))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_each_part_one_segment() {
        let record = Record::new("a/b").with_version("1%");
        assert_eq!(key(&record, "n/1"), "/micro/registry/a%2Fb/1%25/n%2F1");
        assert_eq!(seconds(Duration::from_millis(600)), 1);
        assert_eq!(seconds(Duration::from_millis(2500)), 3);
    }
}
