//! The mDNS registry: zero-configuration discovery on the local network.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::sync::broadcast;

use super::{Event, EventKind, Node, Record, RegisterOptions, Registry, RegistryError, Watcher};

mod txt;

use txt::{instance_name, parse, properties};

/// The DNS-SD service type micro nodes are published under.
pub const SERVICE_TYPE: &str = "_micro._tcp.local.";

/// The TTL of a registration that asks for none.
const DEFAULT_TTL: Duration = Duration::from_secs(90);

/// How long a fresh registry waits for the network's first answers before
/// a lookup may come back empty. The daemon's first query goes out within
/// 50 ms of its start and the second a second later; a responder that
/// announced itself less than a second before stays silent to the first
/// (RFC 6762's once-a-second multicast limit), so the wait covers the
/// answer to the second query.
const WARMUP: Duration = Duration::from_millis(1500);

/// How often nodes that were not renewed in time are dropped.
const EXPIRE_EVERY: Duration = Duration::from_millis(250);

/// Discovery with multicast DNS (DNS-SD), the default registry: services
/// find each other on the local network with no server to run.
///
/// Each node is one DNS-SD instance of `_micro._tcp.local.`, named by its
/// node id; the A/AAAA and SRV records give its address, TXT properties
/// its service name, version, metadata and endpoints (compressed and split
/// to stay within 255 bytes a string, so hundreds of endpoints fit). Nodes
/// announce on register, re-announce whenever they renew, and send goodbye
/// packets when they deregister; a node that vanished without a goodbye is
/// dropped once its TTL passes without a renewal. Standard tools
/// (`avahi-browse -r _micro._tcp`, python-zeroconf) list micro services.
///
/// The multicast daemon starts on first use, so building a client that
/// only calls by address sends nothing.
///
/// ```no_run
/// use micro::registry::MdnsRegistry;
///
/// // Only on loopback (or `MICRO_MDNS_INTERFACES=lo`).
/// let registry = MdnsRegistry::builder().interfaces(["lo"]).build();
/// ```
#[derive(Clone, Debug)]
pub struct MdnsRegistry {
    inner: Arc<Inner>,
}

/// Builds an [`MdnsRegistry`].
#[derive(Clone, Debug, Default)]
pub struct MdnsRegistryBuilder {
    interfaces: Option<Vec<String>>,
}

impl MdnsRegistryBuilder {
    /// Restricts mDNS to these interfaces (by name, such as `lo` or
    /// `eth0`). Default: `MICRO_MDNS_INTERFACES` (comma-separated) if set,
    /// else every multicast-capable interface.
    #[must_use]
    pub fn interfaces<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.interfaces = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// The registry. Its daemon starts on first use.
    pub fn build(self) -> MdnsRegistry {
        let interfaces = self.interfaces.or_else(|| {
            std::env::var("MICRO_MDNS_INTERFACES").ok().map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
        });
        MdnsRegistry {
            inner: Arc::new(Inner {
                interfaces,
                daemon: OnceLock::new(),
                started: OnceLock::new(),
                seen: RwLock::default(),
                own: Mutex::default(),
                events: broadcast::channel(1024).0,
            }),
        }
    }
}

struct Inner {
    interfaces: Option<Vec<String>>,
    /// Started on first use.
    daemon: OnceLock<Result<ServiceDaemon, String>>,
    /// When the daemon sent its first query.
    started: OnceLock<Instant>,
    /// Every node seen, by DNS-SD instance full name.
    seen: RwLock<HashMap<String, Seen>>,
    /// This process's registrations: node id -> instance full name.
    own: Mutex<HashMap<String, String>>,
    events: broadcast::Sender<Event>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MdnsRegistry")
            .field("interfaces", &self.interfaces)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(Ok(daemon)) = self.daemon.get() {
            let _ = daemon.shutdown();
        }
    }
}

/// One node as last resolved: a record with exactly one node.
#[derive(Clone, Debug)]
struct Seen {
    record: Record,
    ttl: Duration,
    renewed: Instant,
}

impl Default for MdnsRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl MdnsRegistry {
    /// A registry on the interfaces `MICRO_MDNS_INTERFACES` names, or all.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder, to choose the interfaces.
    pub fn builder() -> MdnsRegistryBuilder {
        MdnsRegistryBuilder::default()
    }

    fn daemon(&self) -> Result<&ServiceDaemon, RegistryError> {
        let started = self.inner.daemon.get_or_init(|| start_daemon(&self.inner));
        started
            .as_ref()
            .map_err(|e| RegistryError::Backend(format!("mdns: {e}")))
    }

    /// In the first moments after the daemon started, waits until `found`
    /// holds or the network has had time to answer ([`WARMUP`]): a fresh
    /// process's first lookup must not answer from an empty table, or a
    /// first publish reaches nobody and a first call fails.
    async fn settle(&self, found: impl Fn() -> bool) {
        let Some(started) = self.inner.started.get() else {
            return;
        };
        let until = *started + WARMUP;
        if Instant::now() >= until {
            return;
        }
        let mut events = self.inner.events.subscribe();
        while !found() && Instant::now() < until {
            // Any change may be the one awaited; a lag only means more.
            let _ = tokio::time::timeout_at(until.into(), events.recv()).await;
        }
    }

    /// The records of every version of `name` (or of every service).
    fn records(&self, name: Option<&str>) -> Vec<Record> {
        let seen = self.inner.seen.read().unwrap_or_else(|e| e.into_inner());
        let mut grouped: BTreeMap<(String, String), Record> = BTreeMap::new();
        let mut ordered: Vec<&Seen> = seen
            .values()
            .filter(|s| name.is_none_or(|n| s.record.name == n))
            .collect();
        ordered.sort_by(|a, b| a.record.nodes[0].id.cmp(&b.record.nodes[0].id));
        for s in ordered {
            let key = (s.record.name.clone(), s.record.version.clone());
            grouped
                .entry(key)
                .and_modify(|r| r.nodes.extend(s.record.nodes.iter().cloned()))
                .or_insert_with(|| s.record.clone());
        }
        grouped.into_values().collect()
    }
}

fn start_daemon(inner: &Arc<Inner>) -> Result<ServiceDaemon, String> {
    let daemon = ServiceDaemon::new().map_err(|e| e.to_string())?;
    if let Some(names) = &inner.interfaces {
        daemon
            .disable_interface(IfKind::All)
            .map_err(|e| e.to_string())?;
        for name in names {
            daemon
                .enable_interface(IfKind::Name(name.clone()))
                .map_err(|e| e.to_string())?;
        }
    }
    let events = daemon.browse(SERVICE_TYPE).map_err(|e| e.to_string())?;
    let _ = inner.started.set(Instant::now());
    let weak = Arc::downgrade(inner);
    std::thread::Builder::new()
        .name("micro-mdns".into())
        .spawn(move || browse(weak, events))
        .map_err(|e| e.to_string())?;
    Ok(daemon)
}

/// Follows the browse events and expires nodes, until the registry goes.
fn browse(inner: Weak<Inner>, events: mdns_sd::Receiver<ServiceEvent>) {
    loop {
        let event = events.recv_timeout(EXPIRE_EVERY);
        let Some(inner) = inner.upgrade() else { return };
        match event {
            Ok(ServiceEvent::ServiceResolved(resolved)) => {
                if let Some(record) = parse(&resolved) {
                    let (record, ttl) = record;
                    upsert(&inner, &resolved.fullname, record, ttl);
                }
            }
            Ok(ServiceEvent::ServiceRemoved(_, fullname)) => remove(&inner, &fullname),
            Ok(_) | Err(mdns_sd::RecvTimeoutError::Timeout) => {}
            Err(_) => return,
        }
        expire(&inner, Instant::now());
    }
}

/// Publishes a change of the `(name, version)` record to watchers.
fn announce(inner: &Inner, name: &str, version: &str, before: usize, gone: Option<Node>) {
    let seen = inner.seen.read().unwrap_or_else(|e| e.into_inner());
    let mut nodes: Vec<&Seen> = seen
        .values()
        .filter(|s| s.record.name == name && s.record.version == version)
        .collect();
    nodes.sort_by(|a, b| a.record.nodes[0].id.cmp(&b.record.nodes[0].id));
    let event = match (before, nodes.first()) {
        (_, Some(first)) => {
            let mut record = first.record.clone();
            record.nodes = nodes.iter().flat_map(|s| s.record.nodes.clone()).collect();
            let kind = if before == 0 {
                EventKind::Create
            } else {
                EventKind::Update
            };
            Event {
                kind,
                service: record,
            }
        }
        (0, None) => return,
        (_, None) => {
            let Some(node) = gone else { return };
            let mut record = Record::new(name).with_version(version);
            record.nodes.push(node);
            Event {
                kind: EventKind::Delete,
                service: record,
            }
        }
    };
    let _ = inner.events.send(event);
}

fn count(inner: &Inner, name: &str, version: &str) -> usize {
    let seen = inner.seen.read().unwrap_or_else(|e| e.into_inner());
    seen.values()
        .filter(|s| s.record.name == name && s.record.version == version)
        .count()
}

/// Records a resolution; an unchanged node is only renewed.
fn upsert(inner: &Inner, fullname: &str, record: Record, ttl: Duration) {
    let (name, version) = (record.name.clone(), record.version.clone());
    let before = count(inner, &name, &version);
    let changed = {
        let mut seen = inner.seen.write().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match seen.get_mut(fullname) {
            Some(s) if s.record == record => {
                s.renewed = now;
                s.ttl = ttl;
                false
            }
            _ => {
                let moved = seen
                    .get(fullname)
                    .map(|s| (s.record.name.clone(), s.record.version.clone()));
                seen.insert(
                    fullname.to_owned(),
                    Seen {
                        record,
                        ttl,
                        renewed: now,
                    },
                );
                drop(seen);
                // A node that changed service or version left its old record.
                if let Some((old_name, old_version)) = moved
                    && (old_name != name || old_version != version)
                {
                    let left = count(inner, &old_name, &old_version);
                    announce(inner, &old_name, &old_version, left + 1, None);
                }
                true
            }
        }
    };
    if changed {
        announce(inner, &name, &version, before, None);
    }
}

fn remove(inner: &Inner, fullname: &str) {
    let removed = {
        let mut seen = inner.seen.write().unwrap_or_else(|e| e.into_inner());
        seen.remove(fullname)
    };
    if let Some(s) = removed {
        let (name, version) = (&s.record.name, &s.record.version);
        let left = count(inner, name, version);
        announce(
            inner,
            name,
            version,
            left + 1,
            s.record.nodes.into_iter().next(),
        );
    }
}

/// Drops nodes whose TTL passed without a renewal.
fn expire(inner: &Inner, now: Instant) {
    let stale: Vec<String> = {
        let seen = inner.seen.read().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .filter(|(_, s)| s.renewed + s.ttl < now)
            .map(|(k, _)| k.clone())
            .collect()
    };
    for fullname in stale {
        tracing::debug!(instance = %fullname, "mdns: node expired without renewal");
        remove(inner, &fullname);
    }
}

/// Renewal counter: each registration carries a new `seq`, so that
/// browsers see a change and renew the node's TTL.
static SEQ: AtomicU64 = AtomicU64::new(0);

impl Registry for MdnsRegistry {
    fn name(&self) -> &'static str {
        "mdns"
    }

    fn register<'a>(
        &'a self,
        service: &'a Record,
        options: RegisterOptions,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            if service.name.is_empty() {
                return Err(RegistryError::Invalid("service name is empty".into()));
            }
            let daemon = self.daemon()?;
            let ttl = options.ttl.unwrap_or(DEFAULT_TTL);
            for node in &service.nodes {
                let addr: SocketAddr = node.address.parse().map_err(|_| {
                    RegistryError::Invalid(format!(
                        "node address \"{}\" is not ip:port, which mDNS needs",
                        node.address
                    ))
                })?;
                if node.id.is_empty() {
                    return Err(RegistryError::Invalid(format!(
                        "node of service \"{}\" has no id",
                        service.name
                    )));
                }
                let seq = SEQ.fetch_add(1, Ordering::Relaxed);
                let props = properties(service, node, ttl, seq);
                let instance = instance_name(&node.id);
                let info = ServiceInfo::new(
                    SERVICE_TYPE,
                    &instance,
                    &format!("{}.local.", instance.replace('.', "-")),
                    addr.ip(),
                    addr.port(),
                    props.as_slice(),
                )
                .map_err(|e| RegistryError::Backend(format!("mdns: {e}")))?;
                let fullname = info.get_fullname().to_owned();
                daemon
                    .register(info)
                    .map_err(|e| RegistryError::Backend(format!("mdns: {e}")))?;
                self.inner
                    .own
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(node.id.clone(), fullname.clone());
                // Seen at once here; the network confirms it shortly.
                let mut record = service.clone();
                record.nodes = vec![node.clone()];
                upsert(&self.inner, &fullname, record, ttl);
            }
            Ok(())
        })
    }

    fn deregister<'a>(&'a self, service: &'a Record) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let daemon = self.daemon()?;
            for node in &service.nodes {
                let fullname = self
                    .inner
                    .own
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&node.id);
                let Some(fullname) = fullname else { continue };
                remove(&self.inner, &fullname);
                // Goodbye packets (TTL 0) go out before this returns.
                if let Ok(status) = daemon.unregister(&fullname) {
                    let _ = tokio::task::spawn_blocking(move || {
                        status.recv_timeout(Duration::from_secs(2))
                    })
                    .await;
                }
            }
            Ok(())
        })
    }

    fn get_service<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Record>, RegistryError>> {
        Box::pin(async move {
            self.daemon()?;
            self.settle(|| !self.records(Some(name)).is_empty()).await;
            let found = self.records(Some(name));
            if found.is_empty() {
                Err(RegistryError::NotFound(name.to_owned()))
            } else {
                Ok(found)
            }
        })
    }

    fn list_services(&self) -> BoxFuture<'_, Result<Vec<Record>, RegistryError>> {
        Box::pin(async move {
            self.daemon()?;
            // Nothing says when every node has answered: the whole warm-up.
            self.settle(|| false).await;
            Ok(self.records(None))
        })
    }

    fn watch(&self) -> BoxFuture<'_, Result<Watcher, RegistryError>> {
        Box::pin(async move {
            self.daemon()?;
            let rx = self.inner.events.subscribe();
            Ok(Watcher::new(super::memory::events(rx)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resolution_in_steps_updates_one_node() {
        let reg = MdnsRegistry::builder().interfaces(["lo"]).build();
        let mut events = reg.inner.events.subscribe();
        let fullname = "greeter-1._micro._tcp.local.";
        let record =
            |address: &str| Record::new("greeter").with_node(Node::new("greeter-1", address));
        let ttl = Duration::from_secs(90);
        // IPv6 first…
        upsert(&reg.inner, fullname, record("[fd00::1]:80"), ttl);
        // …then the same instance again with IPv4: an update, not a node.
        upsert(&reg.inner, fullname, record("10.0.0.1:80"), ttl);
        // An unchanged renewal is not an event.
        upsert(&reg.inner, fullname, record("10.0.0.1:80"), ttl);
        let found = reg.records(Some("greeter"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].nodes.len(), 1);
        assert_eq!(found[0].nodes[0].address, "10.0.0.1:80");
        let kinds: Vec<EventKind> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, [EventKind::Create, EventKind::Update]);
        // Expiry without renewal removes it and says so.
        expire(&reg.inner, Instant::now() + ttl + Duration::from_secs(1));
        assert!(reg.records(Some("greeter")).is_empty());
        assert_eq!(events.try_recv().unwrap().kind, EventKind::Delete);
    }
}
