//! The in-process registry.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio::sync::broadcast;

use super::{Event, EventKind, Node, Record, RegisterOptions, Registry, RegistryError, Watcher};

/// A registry in this process's memory: for one process, for tests, and as
/// the stand-in where multicast is not available.
///
/// Registrations with a TTL expire without a deregister: an expired node is
/// never returned, and watchers see it leave (within 100 ms of expiry,
/// when a tokio runtime is running). Reads take a shared lock, so many
/// concurrent lookups do not contend.
#[derive(Clone, Debug, Default)]
pub struct MemoryRegistry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// name -> version -> record.
    services: RwLock<HashMap<String, BTreeMap<String, Stored>>>,
    events: broadcast::Sender<Event>,
    /// Whether a task is expiring TTL'd nodes; it stops when none is left.
    reaping: std::sync::atomic::AtomicBool,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            services: RwLock::default(),
            events: broadcast::channel(1024).0,
            reaping: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// How often expired nodes are removed and announced.
const REAP_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

#[derive(Debug)]
struct Stored {
    /// The record with no nodes: name, version, metadata, endpoints.
    service: Record,
    /// node id -> (node, expiry).
    nodes: BTreeMap<String, (Node, Option<Instant>)>,
}

impl Stored {
    fn live(&self, now: Instant) -> Option<Record> {
        let nodes: Vec<Node> = self
            .nodes
            .values()
            .filter(|(_, exp)| exp.is_none_or(|e| e > now))
            .map(|(n, _)| n.clone())
            .collect();
        if nodes.is_empty() {
            return None;
        }
        let mut svc = self.service.clone();
        svc.nodes = nodes;
        Some(svc)
    }
}

impl MemoryRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn emit(&self, kind: EventKind, service: Record) {
        // No receivers is fine: nobody is watching.
        let _ = self.inner.events.send(Event { kind, service });
    }

    fn register_sync(
        &self,
        service: &Record,
        options: &RegisterOptions,
    ) -> Result<(), RegistryError> {
        super::check(service)?;
        let now = Instant::now();
        let expiry = options.ttl.map(|ttl| now + ttl);
        let (kind, snapshot) = {
            let mut services = self
                .inner
                .services
                .write()
                .unwrap_or_else(|e| e.into_inner());
            let versions = services.entry(service.name.clone()).or_default();
            let record = versions
                .entry(service.version.clone())
                .or_insert_with(|| Stored {
                    service: Record {
                        nodes: Vec::new(),
                        ..service.clone()
                    },
                    nodes: BTreeMap::new(),
                });
            let was_live = record.live(now).is_some();
            let mut changed = !was_live;
            record.service.metadata.clone_from(&service.metadata);
            if record.service.endpoints != service.endpoints {
                record.service.endpoints.clone_from(&service.endpoints);
                changed = true;
            }
            for node in &service.nodes {
                let prev = record.nodes.insert(node.id.clone(), (node.clone(), expiry));
                changed |= prev.is_none_or(|(old, _)| old != *node);
            }
            let kind = if !was_live {
                EventKind::Create
            } else {
                EventKind::Update
            };
            (changed.then_some(kind), record.live(now))
        };
        if let (Some(kind), Some(svc)) = (kind, snapshot) {
            self.emit(kind, svc);
        }
        if options.ttl.is_some() {
            self.start_reaper();
        }
        Ok(())
    }

    /// Starts the task that removes expired nodes, unless it runs.
    fn start_reaper(&self) {
        use std::sync::atomic::Ordering;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.inner.reaping.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(REAP_EVERY).await;
                let Some(inner) = weak.upgrade() else { return };
                let registry = MemoryRegistry { inner };
                if !registry.reap(Instant::now()) {
                    registry.inner.reaping.store(false, Ordering::SeqCst);
                    return;
                }
            }
        });
    }

    /// Removes nodes expired at `now` and tells watchers; returns whether
    /// any node with a TTL is left.
    fn reap(&self, now: Instant) -> bool {
        let mut events = Vec::new();
        let mut ttl_left = false;
        {
            let mut services = self
                .inner
                .services
                .write()
                .unwrap_or_else(|e| e.into_inner());
            for versions in services.values_mut() {
                for record in versions.values_mut() {
                    let before = record.nodes.len();
                    let mut gone = Vec::new();
                    record.nodes.retain(|_, (node, exp)| {
                        let keep = exp.is_none_or(|e| e > now);
                        if !keep {
                            gone.push(node.clone());
                        }
                        ttl_left |= keep && exp.is_some();
                        keep
                    });
                    if record.nodes.len() == before {
                        continue;
                    }
                    match record.live(now) {
                        Some(after) => events.push((EventKind::Update, after)),
                        None => {
                            let mut svc = record.service.clone();
                            svc.nodes = gone;
                            events.push((EventKind::Delete, svc));
                        }
                    }
                }
                versions.retain(|_, r| !r.nodes.is_empty());
            }
            services.retain(|_, v| !v.is_empty());
        }
        for (kind, svc) in events {
            self.emit(kind, svc);
        }
        ttl_left
    }

    fn deregister_sync(&self, service: &Record) {
        let now = Instant::now();
        let event = {
            let mut services = self
                .inner
                .services
                .write()
                .unwrap_or_else(|e| e.into_inner());
            let Some(versions) = services.get_mut(&service.name) else {
                return;
            };
            let Some(record) = versions.get_mut(&service.version) else {
                return;
            };
            let before = record.live(now);
            let mut removed = Vec::new();
            for node in &service.nodes {
                if let Some((n, _)) = record.nodes.remove(&node.id) {
                    removed.push(n);
                }
            }
            let after = record.live(now);
            if record.nodes.is_empty() {
                versions.remove(&service.version);
                if versions.is_empty() {
                    services.remove(&service.name);
                }
            }
            match (before, after) {
                (Some(_), Some(after)) if !removed.is_empty() => Some((EventKind::Update, after)),
                (Some(mut before), None) => {
                    before.nodes = removed;
                    Some((EventKind::Delete, before))
                }
                _ => None,
            }
        };
        if let Some((kind, svc)) = event {
            self.emit(kind, svc);
        }
    }

    fn snapshot(&self, name: Option<&str>) -> Vec<Record> {
        let now = Instant::now();
        let services = self
            .inner
            .services
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let records = |versions: &BTreeMap<String, Stored>| -> Vec<Record> {
            versions.values().filter_map(|r| r.live(now)).collect()
        };
        match name {
            Some(name) => services.get(name).map(records).unwrap_or_default(),
            None => {
                let mut all: Vec<Record> = services.values().flat_map(records).collect();
                all.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
                all
            }
        }
    }
}

impl Registry for MemoryRegistry {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn register<'a>(
        &'a self,
        service: &'a Record,
        options: RegisterOptions,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        let result = self.register_sync(service, &options);
        Box::pin(std::future::ready(result))
    }

    fn deregister<'a>(&'a self, service: &'a Record) -> BoxFuture<'a, Result<(), RegistryError>> {
        self.deregister_sync(service);
        Box::pin(std::future::ready(Ok(())))
    }

    fn get_service<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Record>, RegistryError>> {
        let found = self.snapshot(Some(name));
        let result = if found.is_empty() {
            Err(RegistryError::NotFound(name.to_owned()))
        } else {
            Ok(found)
        };
        Box::pin(std::future::ready(result))
    }

    fn list_services(&self) -> BoxFuture<'_, Result<Vec<Record>, RegistryError>> {
        Box::pin(std::future::ready(Ok(self.snapshot(None))))
    }

    fn watch(&self) -> BoxFuture<'_, Result<Watcher, RegistryError>> {
        let rx = self.inner.events.subscribe();
        let stream = events(rx);
        Box::pin(std::future::ready(Ok(Watcher::new(stream))))
    }
}

/// Turns a broadcast receiver into a stream of events, reporting lag.
pub(super) fn events(
    rx: broadcast::Receiver<Event>,
) -> impl futures_util::Stream<Item = Result<Event, RegistryError>> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(ev) => Some((Ok(ev), rx)),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                Some((Err(RegistryError::Lagged(n)), rx))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn svc(node: &str) -> Record {
        Record::new("greeter").with_node(Node::new(node, format!("127.0.0.1:{}", node.len())))
    }

    #[tokio::test]
    async fn nodes_accumulate_and_leave() {
        let reg = MemoryRegistry::new();
        reg.register(&svc("a"), RegisterOptions::default())
            .await
            .unwrap();
        reg.register(&svc("bb"), RegisterOptions::default())
            .await
            .unwrap();
        let found = reg.get_service("greeter").await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].nodes.len(), 2);
        reg.deregister(&svc("a")).await.unwrap();
        assert_eq!(reg.get_service("greeter").await.unwrap()[0].nodes.len(), 1);
        reg.deregister(&svc("bb")).await.unwrap();
        assert!(matches!(
            reg.get_service("greeter").await,
            Err(RegistryError::NotFound(_))
        ));
        assert!(reg.list_services().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn ttl_expires_without_deregister() {
        let reg = MemoryRegistry::new();
        let opts = RegisterOptions::with_ttl(Duration::from_millis(30));
        reg.register(&svc("a"), opts.clone()).await.unwrap();
        assert!(reg.get_service("greeter").await.is_ok());
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(reg.get_service("greeter").await.is_err());
        // Renewing brings it back.
        reg.register(&svc("a"), opts).await.unwrap();
        assert!(reg.get_service("greeter").await.is_ok());
    }

    #[tokio::test]
    async fn watchers_see_expired_nodes_leave() {
        let reg = MemoryRegistry::new();
        let mut w = reg.watch().await.unwrap();
        let opts = RegisterOptions::with_ttl(Duration::from_millis(50));
        reg.register(&svc("a"), opts.clone()).await.unwrap();
        reg.register(&svc("bb"), RegisterOptions::default())
            .await
            .unwrap();
        reg.register(&svc("ccc"), opts).await.unwrap();
        for _ in 0..3 {
            w.next().await.unwrap().unwrap();
        }
        let started = Instant::now();
        let ev = tokio::time::timeout(Duration::from_secs(2), w.next())
            .await
            .expect("an event within 2 s")
            .unwrap()
            .unwrap();
        assert_eq!(ev.kind, EventKind::Update);
        assert_eq!(ev.service.nodes.len(), 1, "{ev:?}");
        assert_eq!(ev.service.nodes[0].id, "bb");
        assert!(started.elapsed() < Duration::from_millis(500));
        // Only the permanent node is left, and the reaper has stopped.
        assert_eq!(reg.get_service("greeter").await.unwrap()[0].nodes.len(), 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!reg.inner.reaping.load(std::sync::atomic::Ordering::SeqCst));
        reg.deregister(&svc("bb")).await.unwrap();
        assert_eq!(w.next().await.unwrap().unwrap().kind, EventKind::Delete);
    }

    #[tokio::test]
    async fn versions_are_separate_records() {
        let reg = MemoryRegistry::new();
        reg.register(&svc("a"), RegisterOptions::default())
            .await
            .unwrap();
        reg.register(&svc("b").with_version("v2"), RegisterOptions::default())
            .await
            .unwrap();
        let mut versions: Vec<_> = reg
            .get_service("greeter")
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.version)
            .collect();
        versions.sort();
        assert_eq!(versions, ["latest", "v2"]);
    }

    #[tokio::test]
    async fn watch_sees_create_update_delete() {
        let reg = MemoryRegistry::new();
        let mut w = reg.watch().await.unwrap();
        reg.register(&svc("a"), RegisterOptions::default())
            .await
            .unwrap();
        reg.register(&svc("bb"), RegisterOptions::default())
            .await
            .unwrap();
        // Renewing an unchanged node is not an event.
        reg.register(&svc("bb"), RegisterOptions::default())
            .await
            .unwrap();
        reg.deregister(&svc("a")).await.unwrap();
        reg.deregister(&svc("bb")).await.unwrap();
        let kinds: Vec<_> = [(); 4]
            .iter()
            .map(|_| {
                futures_util::FutureExt::now_or_never(w.next())
                    .unwrap()
                    .unwrap()
                    .unwrap()
            })
            .map(|e| (e.kind, e.service.nodes.len()))
            .collect();
        assert_eq!(
            kinds,
            [
                (EventKind::Create, 1),
                (EventKind::Update, 2),
                (EventKind::Update, 1),
                (EventKind::Delete, 1)
            ]
        );
    }

    #[tokio::test]
    async fn invalid_records_are_rejected() {
        let reg = MemoryRegistry::new();
        let err = reg
            .register(
                &Record::new("x").with_node(Node::new("", "1.2.3.4:5")),
                RegisterOptions::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid registration: node \"\" of service \"x\" needs an id and an address"
        );
    }

    #[test]
    fn concurrent_readers_and_writers() {
        let reg = MemoryRegistry::new();
        std::thread::scope(|s| {
            for t in 0..4 {
                let reg = &reg;
                s.spawn(move || {
                    for i in 0..200 {
                        let node = Node::new(format!("n{t}-{i}"), "127.0.0.1:1");
                        let svc = Record::new("load").with_node(node);
                        reg.register_sync(&svc, &RegisterOptions::default())
                            .unwrap();
                        assert!(!reg.snapshot(Some("load")).is_empty());
                    }
                });
            }
        });
        assert_eq!(reg.snapshot(Some("load"))[0].nodes.len(), 800);
    }
}
