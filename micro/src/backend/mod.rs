//! The backends a service and its clients run on, as one bundle.
//!
//! Every part (registry, broker; store, events, sync, config and auth as
//! they come) is chosen the same way: a kind from `MICRO_<PART>` and a
//! server from `MICRO_<PART>_ADDRESS`. An unknown kind, or one whose cargo
//! feature this build lacks, is logged with every kind this build knows and
//! the feature to enable, and the default is used.
//!
//! [`Backends`] holds one of each part. [`Service`](crate::Service) and
//! [`Client`](crate::Client) both take it, so a service and the clients it
//! makes agree on where services are and where events go; their per-part
//! setters (`.registry(..)`, `.broker(..)`) override one part.
//!
//! The parts a bundle chooses that point at the same server URL share one
//! connection to it.
//!
//! ```
//! use std::sync::Arc;
//! use micro::Backends;
//! use micro::broker::MemoryBroker;
//!
//! // Everything in this process, nothing on the network: for tests.
//! let backends = Backends::memory();
//! let client = micro::Client::builder().backends(&backends).build();
//! let service = micro::Service::new("greeter").backends(&backends);
//!
//! // One part replaced, the others kept.
//! let backends = backends.with_broker(Arc::new(MemoryBroker::new()));
//! assert_eq!(backends.broker().name(), "memory");
//! ```

mod env;
#[cfg(feature = "etcd")]
pub(crate) mod etcd;
#[cfg(feature = "nats")]
pub(crate) mod nats;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "redis")]
pub(crate) mod redis;

#[cfg(any(
    feature = "nats",
    feature = "redis",
    feature = "postgres",
    feature = "etcd",
    feature = "rabbitmq",
    feature = "mqtt"
))]
use std::collections::HashMap;
use std::fmt;
#[cfg(any(
    feature = "nats",
    feature = "redis",
    feature = "postgres",
    feature = "etcd",
    feature = "rabbitmq",
    feature = "mqtt"
))]
use std::sync::Mutex;
use std::sync::{Arc, OnceLock};

#[cfg(feature = "nats")]
pub(crate) use env::from_env;
pub(crate) use env::{Choice, unusable};

use crate::broker::{Broker, HttpBroker, MemoryBroker};
use crate::events::{Events, MemoryEvents};
use crate::registry::{MdnsRegistry, MemoryRegistry, Registry};
use crate::store::{FileStore, MemoryStore, Store, Unavailable};
use crate::sync::{Locks, MemoryLocks};

/// One backend of each part, shared by a service and its clients. Cheap to
/// clone: clones share the parts.
#[derive(Clone)]
pub struct Backends {
    registry: Arc<dyn Registry>,
    broker: Arc<dyn Broker>,
    store: Arc<dyn Store>,
    events: Arc<dyn Events>,
    sync: Arc<dyn Locks>,
}

impl fmt::Debug for Backends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backends")
            .field("registry", &self.registry.name())
            .field("broker", &self.broker.name())
            .field("store", &self.store.name())
            .field("events", &self.events.name())
            .field("sync", &self.sync.name())
            .finish_non_exhaustive()
    }
}

impl Default for Backends {
    /// The process's backends: chosen once from the environment, on first
    /// use, and shared by every [`Service`](crate::Service) and
    /// [`Client`](crate::Client) not given others.
    fn default() -> Self {
        static DEFAULT: OnceLock<Backends> = OnceLock::new();
        DEFAULT.get_or_init(Backends::from_env).clone()
    }
}

impl Backends {
    /// A new bundle chosen from the environment:
    ///
    /// | part | `MICRO_<PART>` | default | `MICRO_<PART>_ADDRESS` |
    /// |---|---|---|---|
    /// | registry | `mdns`, `memory`, `nats`, `etcd` (features of the same names) | `mdns` | the server's URL (`nats://127.0.0.1:4222`, `http://127.0.0.1:2379`; several etcd URLs comma-separated) |
    /// | broker | `http`, `memory`, `nats`, `rabbitmq`, `mqtt` (features of the same names) | `http` | the server's URL (`nats://127.0.0.1:4222`, `amqp://127.0.0.1:5672/%2f`, `mqtt://127.0.0.1:1883`) |
    /// | store | `memory`, `file`, `nats`, `postgres`, `redis` (features of the same names) | `memory` | the file store's directory (`./micro-store`), or the server's URL |
    /// | events | `memory`, `nats`, `redis` (features of the same names) | `memory` | the server's URL (`nats://127.0.0.1:4222`, `redis://127.0.0.1:6379`) |
    /// | sync | `memory`, `nats`, `postgres`, `redis` (features of the same names) | `memory` | the server's URL, as for the store |
    /// | config (the remote source of [`ConfigBuilder::remote`](crate::config::ConfigBuilder::remote)) | the store's kinds | none | as for the store |
    ///
    /// A store that cannot be opened (a directory another process holds,
    /// say) is logged, and every call to it fails with 503 saying why.
    ///
    /// The HTTP broker finds subscribers through this bundle's registry.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Everything in this process: a memory registry and a memory broker.
    /// Nothing goes on the network; services and clients sharing the bundle
    /// find each other.
    pub fn memory() -> Self {
        Self {
            registry: Arc::new(MemoryRegistry::new()),
            broker: Arc::new(MemoryBroker::new()),
            store: Arc::new(MemoryStore::new()),
            events: Arc::new(MemoryEvents::new()),
            sync: Arc::new(MemoryLocks::new()),
        }
    }

    /// As [`from_env`](Self::from_env), reading the variables through
    /// `var`: from a config file or a map, say, instead of the process's
    /// environment.
    ///
    /// ```
    /// use micro::Backends;
    ///
    /// let backends = Backends::from_vars(|name| match name {
    ///     "MICRO_REGISTRY" | "MICRO_BROKER" => Some("memory".to_owned()),
    ///     _ => None,
    /// });
    /// assert_eq!(backends.registry().name(), "memory");
    /// assert_eq!(backends.broker().name(), "memory");
    /// ```
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let var = profiled(var);
        // The parts made here that point at one server share a
        // connection to it.
        let connections = Connections::default();
        let registry = choose_registry(&var, &connections);
        let broker = choose_broker(&var, &registry, &connections);
        let store = choose_store(&var, &connections);
        let events = choose_events(&var, &connections);
        let sync = choose_sync(&var, &connections);
        Self {
            registry,
            broker,
            store,
            events,
            sync,
        }
    }

    /// The registry services register in and clients look them up in.
    pub fn registry(&self) -> &Arc<dyn Registry> {
        &self.registry
    }

    /// The broker events are published through and subscribed from.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    /// The store services keep their records in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The events backend services publish durable events to and consume
    /// them from.
    pub fn events(&self) -> &Arc<dyn Events> {
        &self.events
    }

    /// This bundle with `events` instead of its own.
    #[must_use]
    pub fn with_events(mut self, events: Arc<dyn Events>) -> Self {
        self.events = events;
        self
    }

    /// The locks services take and run their elections on.
    pub fn sync(&self) -> &Arc<dyn Locks> {
        &self.sync
    }

    /// This bundle with `sync` instead of its own.
    #[must_use]
    pub fn with_sync(mut self, sync: Arc<dyn Locks>) -> Self {
        self.sync = sync;
        self
    }

    /// This bundle with `store` instead of its own.
    #[must_use]
    pub fn with_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = store;
        self
    }

    /// This bundle with `registry` instead of its own. An HTTP broker the
    /// bundle chose keeps the registry it was made with.
    #[must_use]
    pub fn with_registry(mut self, registry: Arc<dyn Registry>) -> Self {
        self.registry = registry;
        self
    }

    /// This bundle with `broker` instead of its own.
    #[must_use]
    pub fn with_broker(mut self, broker: Arc<dyn Broker>) -> Self {
        self.broker = broker;
        self
    }
}

/// The connections of the parts of one bundle, one per server URL (empty
/// when no backend that connects to a server is compiled in).
#[derive(Debug, Default)]
struct Connections {
    #[cfg(feature = "nats")]
    nats: Mutex<HashMap<String, Arc<nats::NatsConnection>>>,
    #[cfg(feature = "rabbitmq")]
    rabbitmq: Mutex<HashMap<String, Arc<crate::broker::RabbitConnection>>>,
    #[cfg(feature = "mqtt")]
    mqtt: Mutex<HashMap<String, Arc<crate::broker::MqttConnection>>>,
    #[cfg(feature = "redis")]
    redis: Mutex<HashMap<String, Arc<redis::RedisConnection>>>,
    #[cfg(feature = "postgres")]
    postgres: Mutex<HashMap<String, Arc<postgres::PostgresPool>>>,
    #[cfg(feature = "etcd")]
    etcd: Mutex<HashMap<String, Arc<etcd::EtcdConnection>>>,
}

impl Connections {
    /// The pool of connections to the Postgres server at `url`: the same
    /// one for every part that asks.
    ///
    /// # Errors
    /// Why the driver does not take the URL.
    #[cfg(feature = "postgres")]
    fn postgres(&self, url: &str) -> Result<Arc<postgres::PostgresPool>, String> {
        let mut map = self.postgres.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get(url) {
            return Ok(p.clone());
        }
        let p = postgres::PostgresPool::new(url)?;
        map.insert(url.to_owned(), p.clone());
        Ok(p)
    }

    /// The connection to the Redis server at `url`: the same one for every
    /// part that asks.
    ///
    /// # Errors
    /// Why Redis does not take the URL.
    #[cfg(feature = "redis")]
    fn redis(&self, url: &str) -> Result<Arc<redis::RedisConnection>, String> {
        let mut map = self.redis.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get(url) {
            return Ok(c.clone());
        }
        let c = redis::RedisConnection::new(url)?;
        map.insert(url.to_owned(), c.clone());
        Ok(c)
    }

    /// The connection to the etcd cluster at `address`: the same one for
    /// every part that asks.
    #[cfg(feature = "etcd")]
    fn etcd(&self, address: &str) -> Arc<etcd::EtcdConnection> {
        let mut map = self.etcd.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(address.to_owned())
            .or_insert_with(|| etcd::EtcdConnection::new(address))
            .clone()
    }

    /// The connection to the NATS server at `url`: the same one for every
    /// part that asks.
    #[cfg(feature = "mqtt")]
    fn mqtt(&self, url: &str) -> Arc<crate::broker::MqttConnection> {
        let mut map = self.mqtt.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(url.to_owned())
            .or_insert_with(|| crate::broker::MqttConnection::new(url))
            .clone()
    }

    #[cfg(feature = "rabbitmq")]
    fn rabbitmq(&self, url: &str) -> Arc<crate::broker::RabbitConnection> {
        let mut map = self.rabbitmq.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(url.to_owned())
            .or_insert_with(|| crate::broker::RabbitConnection::new(url))
            .clone()
    }

    #[cfg(feature = "nats")]
    fn nats(&self, url: &str) -> Arc<nats::NatsConnection> {
        let mut map = self.nats.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(url.to_owned())
            .or_insert_with(|| nats::NatsConnection::new(url))
            .clone()
    }
}

#[cfg_attr(not(any(feature = "nats", feature = "redis")), allow(unused_variables))]
fn choose_events(
    var: &impl Fn(&str) -> Option<String>,
    connections: &Connections,
) -> Arc<dyn Events> {
    let (kind, address) = env::part(var, "EVENTS");
    match kind.as_deref() {
        #[cfg(feature = "nats")]
        Some("nats") => {
            let url = address.unwrap_or_else(|| crate::broker::NATS_DEFAULT_URL.to_owned());
            Arc::new(crate::events::NatsEvents::on(connections.nats(&url)))
        }
        #[cfg(feature = "redis")]
        Some("redis") => {
            let url = address.unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
            match connections.redis(&url) {
                Ok(c) => Arc::new(crate::events::RedisEvents::on(c)),
                Err(e) => {
                    tracing::error!(error = %e, "MICRO_EVENTS=redis: events cannot be used");
                    Arc::new(crate::events::Unavailable::new("redis", e))
                }
            }
        }
        None | Some("memory") => Arc::new(MemoryEvents::new()),
        Some(other) => {
            let choices = [
                Choice::built_in("memory"),
                Choice::feature("nats", cfg!(feature = "nats")),
                Choice::feature("redis", cfg!(feature = "redis")),
            ];
            tracing::error!("{}", unusable("MICRO_EVENTS", other, &choices, "memory"));
            Arc::new(MemoryEvents::new())
        }
    }
}

#[cfg_attr(
    not(any(feature = "redis", feature = "postgres", feature = "nats")),
    allow(unused_variables)
)]
fn choose_sync(var: &impl Fn(&str) -> Option<String>, connections: &Connections) -> Arc<dyn Locks> {
    let (kind, address) = env::part(var, "SYNC");
    // A lock on another backend than the one asked for would not exclude
    // anyone: one that cannot be set up refuses every lock.
    #[cfg(any(feature = "redis", feature = "postgres"))]
    let refuse = |name: &'static str, e: String| -> Arc<dyn Locks> {
        tracing::error!(error = %e, "MICRO_SYNC={name}: locks cannot be used");
        Arc::new(crate::sync::Unavailable::new(name, e))
    };
    match kind.as_deref() {
        #[cfg(feature = "redis")]
        Some("redis") => {
            let url = address.unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
            match connections.redis(&url) {
                Ok(c) => Arc::new(crate::sync::RedisLocks::on(c)),
                Err(e) => refuse("redis", e),
            }
        }
        #[cfg(feature = "postgres")]
        Some("postgres") => {
            let url = address.unwrap_or_else(|| POSTGRES_DEFAULT_URL.to_owned());
            match connections.postgres(&url) {
                Ok(pool) => Arc::new(crate::sync::PostgresLocks::on(pool)),
                Err(e) => refuse("postgres", e),
            }
        }
        #[cfg(feature = "nats")]
        Some("nats") => {
            let url = address.unwrap_or_else(|| crate::broker::NATS_DEFAULT_URL.to_owned());
            Arc::new(crate::sync::NatsLocks::on(connections.nats(&url)))
        }
        None | Some("memory") => Arc::new(MemoryLocks::new()),
        Some(other) => {
            let choices = [
                Choice::built_in("memory"),
                Choice::feature("nats", cfg!(feature = "nats")),
                Choice::feature("postgres", cfg!(feature = "postgres")),
                Choice::feature("redis", cfg!(feature = "redis")),
            ];
            tracing::error!("{}", unusable("MICRO_SYNC", other, &choices, "memory"));
            Arc::new(MemoryLocks::new())
        }
    }
}

/// The Postgres server parts use when given none.
#[cfg(feature = "postgres")]
const POSTGRES_DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The etcd cluster the registry uses when given none.
#[cfg(feature = "etcd")]
const ETCD_DEFAULT_URL: &str = "http://127.0.0.1:2379";

#[cfg_attr(not(any(feature = "nats", feature = "etcd")), allow(unused_variables))]
fn choose_registry(
    var: &impl Fn(&str) -> Option<String>,
    connections: &Connections,
) -> Arc<dyn Registry> {
    let (kind, address) = env::part(var, "REGISTRY");
    match kind.as_deref() {
        Some("memory") => Arc::new(MemoryRegistry::new()),
        #[cfg(feature = "nats")]
        Some("nats") => {
            let url = address.unwrap_or_else(|| crate::broker::NATS_DEFAULT_URL.to_owned());
            Arc::new(crate::registry::NatsRegistry::on(connections.nats(&url)))
        }
        #[cfg(feature = "etcd")]
        Some("etcd") => {
            let url = address.unwrap_or_else(|| ETCD_DEFAULT_URL.to_owned());
            Arc::new(crate::registry::EtcdRegistry::on(connections.etcd(&url)))
        }
        None | Some("mdns") => Arc::new(MdnsRegistry::new()),
        Some(other) => {
            let choices = [
                Choice::built_in("mdns"),
                Choice::built_in("memory"),
                Choice::feature("nats", cfg!(feature = "nats")),
                Choice::feature("etcd", cfg!(feature = "etcd")),
            ];
            tracing::error!("{}", unusable("MICRO_REGISTRY", other, &choices, "mdns"));
            Arc::new(MdnsRegistry::new())
        }
    }
}

/// The directory the file store uses when given none.
const FILE_STORE_DIR: &str = "micro-store";

#[cfg_attr(
    not(any(feature = "redis", feature = "postgres", feature = "nats")),
    allow(unused_variables)
)]
fn choose_store(
    var: &impl Fn(&str) -> Option<String>,
    connections: &Connections,
) -> Arc<dyn Store> {
    store_for(var, "STORE", connections)
}

/// The store the remote config source reads: the one `MICRO_CONFIG` and
/// `MICRO_CONFIG_ADDRESS` name (the store's kinds), or none when
/// `MICRO_CONFIG` is unset.
pub(crate) fn config_store(var: &impl Fn(&str) -> Option<String>) -> Option<Arc<dyn Store>> {
    let var = profiled(var);
    env::part(&var, "CONFIG").0?;
    Some(store_for(&var, "CONFIG", &Connections::default()))
}

/// The parts a profile moves.
const PROFILED: [&str; 6] = ["REGISTRY", "BROKER", "EVENTS", "STORE", "SYNC", "CONFIG"];

/// `var`, with `MICRO_PROFILE` filling in what it leaves unset:
/// `MICRO_PROFILE=nats` puts every part of [`PROFILED`] on NATS, at
/// `MICRO_PROFILE_ADDRESS` (default `nats://127.0.0.1:4222`). A part's own
/// `MICRO_<PART>` (and `_ADDRESS`) still wins.
fn profiled(var: impl Fn(&str) -> Option<String>) -> impl Fn(&str) -> Option<String> {
    let get = move |name: &str| var(name).filter(|v| !v.is_empty());
    let profile = get("MICRO_PROFILE");
    let address = get("MICRO_PROFILE_ADDRESS");
    match profile.as_deref() {
        None | Some("nats") => {}
        Some(other) => tracing::error!(
            "unknown MICRO_PROFILE \"{other}\", expected: nats; each part keeps its own setting"
        ),
    }
    move |name: &str| {
        if let Some(value) = get(name) {
            return Some(value);
        }
        if profile.as_deref() != Some("nats") {
            return None;
        }
        let part = name.strip_prefix("MICRO_")?;
        match part.strip_suffix("_ADDRESS") {
            Some(part) if PROFILED.contains(&part) => {
                // Only where the part itself follows the profile.
                get(&format!("MICRO_{part}"))
                    .is_none()
                    .then(|| address.clone())
                    .flatten()
            }
            Some(_) => None,
            None => PROFILED.contains(&part).then(|| "nats".to_owned()),
        }
    }
}

/// The store `MICRO_<PART>` and `MICRO_<PART>_ADDRESS` name.
#[cfg_attr(
    not(any(feature = "redis", feature = "postgres", feature = "nats")),
    allow(unused_variables)
)]
fn store_for(
    var: &impl Fn(&str) -> Option<String>,
    part: &str,
    connections: &Connections,
) -> Arc<dyn Store> {
    let (kind, address) = env::part(var, part);
    let name = format!("MICRO_{part}");
    match kind.as_deref() {
        #[cfg(feature = "nats")]
        Some("nats") => {
            let url = address.unwrap_or_else(|| crate::broker::NATS_DEFAULT_URL.to_owned());
            Arc::new(crate::store::NatsKvStore::on(connections.nats(&url)))
        }
        #[cfg(feature = "postgres")]
        Some("postgres") => {
            let url = address.unwrap_or_else(|| POSTGRES_DEFAULT_URL.to_owned());
            match connections.postgres(&url) {
                Ok(pool) => Arc::new(crate::store::PostgresStore::on(pool)),
                Err(e) => {
                    tracing::error!(error = %e, "{name}=postgres: the store cannot be used");
                    Arc::new(Unavailable::new("postgres", e))
                }
            }
        }
        #[cfg(feature = "redis")]
        Some("redis") => {
            let url = address.unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
            match connections.redis(&url) {
                Ok(c) => Arc::new(crate::store::RedisStore::on(c)),
                Err(e) => {
                    tracing::error!(error = %e, "{name}=redis: the store cannot be used");
                    Arc::new(Unavailable::new("redis", e))
                }
            }
        }
        None | Some("memory") => Arc::new(MemoryStore::new()),
        Some("file") => {
            let dir = address.unwrap_or_else(|| FILE_STORE_DIR.to_owned());
            match FileStore::open(&dir) {
                Ok(store) => Arc::new(store),
                Err(e) => {
                    tracing::error!(error = %e, "{name}=file: the store cannot be opened");
                    Arc::new(Unavailable::new("file", e.to_string()))
                }
            }
        }
        Some(other) => {
            let choices = [
                Choice::built_in("memory"),
                Choice::built_in("file"),
                Choice::feature("nats", cfg!(feature = "nats")),
                Choice::feature("postgres", cfg!(feature = "postgres")),
                Choice::feature("redis", cfg!(feature = "redis")),
            ];
            tracing::error!("{}", unusable(&name, other, &choices, "memory"));
            Arc::new(MemoryStore::new())
        }
    }
}

#[cfg_attr(not(feature = "nats"), allow(unused_variables))]
fn choose_broker(
    var: &impl Fn(&str) -> Option<String>,
    registry: &Arc<dyn Registry>,
    connections: &Connections,
) -> Arc<dyn Broker> {
    let (kind, address) = env::part(var, "BROKER");
    let http = || Arc::new(HttpBroker::new(registry.clone()));
    match kind.as_deref() {
        Some("memory") => Arc::new(MemoryBroker::new()),
        #[cfg(feature = "nats")]
        Some("nats") => {
            let url = address
                .as_deref()
                .unwrap_or(crate::broker::NATS_DEFAULT_URL);
            Arc::new(crate::broker::NatsBroker::on(connections.nats(url)))
        }
        #[cfg(feature = "rabbitmq")]
        Some("rabbitmq") => {
            let url = address
                .as_deref()
                .unwrap_or(crate::broker::RABBITMQ_DEFAULT_URL);
            Arc::new(crate::broker::RabbitBroker::on(connections.rabbitmq(url)))
        }
        #[cfg(feature = "mqtt")]
        Some("mqtt") => {
            let url = address
                .as_deref()
                .unwrap_or(crate::broker::MQTT_DEFAULT_URL);
            Arc::new(crate::broker::MqttBroker::on(connections.mqtt(url)))
        }
        None | Some("http") => http(),
        Some(other) => {
            let choices = [
                Choice::built_in("http"),
                Choice::built_in("memory"),
                Choice::feature("nats", cfg!(feature = "nats")),
                Choice::feature("rabbitmq", cfg!(feature = "rabbitmq")),
                Choice::feature("mqtt", cfg!(feature = "mqtt")),
            ];
            tracing::error!("{}", unusable("MICRO_BROKER", other, &choices, "http"));
            http()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn each_part_is_chosen_by_its_variable() {
        let b = Backends::from_vars(vars(&[
            ("MICRO_REGISTRY", "memory"),
            ("MICRO_BROKER", "memory"),
        ]));
        assert_eq!(b.registry().name(), "memory");
        assert_eq!(b.broker().name(), "memory");
        let b = Backends::from_vars(vars(&[("MICRO_REGISTRY", "memory"), ("MICRO_BROKER", "")]));
        assert_eq!(b.broker().name(), "http", "empty is unset");
    }

    #[test]
    fn a_profile_fills_in_what_the_parts_leave_unset() {
        let var = profiled(vars(&[
            ("MICRO_PROFILE", "nats"),
            ("MICRO_PROFILE_ADDRESS", "nats://10.0.0.1:4222"),
            ("MICRO_STORE", "redis"),
            ("MICRO_STORE_ADDRESS", "redis://r:6379"),
            ("MICRO_SYNC", "memory"),
        ]));
        assert_eq!(var("MICRO_REGISTRY").as_deref(), Some("nats"));
        assert_eq!(
            var("MICRO_REGISTRY_ADDRESS").as_deref(),
            Some("nats://10.0.0.1:4222")
        );
        assert_eq!(var("MICRO_BROKER").as_deref(), Some("nats"));
        assert_eq!(
            var("MICRO_EVENTS_ADDRESS").as_deref(),
            Some("nats://10.0.0.1:4222")
        );
        assert_eq!(var("MICRO_STORE").as_deref(), Some("redis"));
        assert_eq!(
            var("MICRO_STORE_ADDRESS").as_deref(),
            Some("redis://r:6379")
        );
        assert_eq!(var("MICRO_SYNC").as_deref(), Some("memory"));
        assert_eq!(
            var("MICRO_SYNC_ADDRESS"),
            None,
            "a part off the profile gets no address"
        );
        assert_eq!(var("MICRO_SERVER_ADDRESS"), None);
        let none = profiled(vars(&[("MICRO_STORE", "file")]));
        assert_eq!(none("MICRO_REGISTRY"), None);
        assert_eq!(none("MICRO_STORE").as_deref(), Some("file"));
    }

    #[test]
    fn an_unknown_kind_falls_back_to_the_default() {
        let b = Backends::from_vars(vars(&[
            ("MICRO_REGISTRY", "memory"),
            ("MICRO_BROKER", "kafka"),
        ]));
        assert_eq!(b.broker().name(), "http");
    }

    #[cfg(feature = "nats")]
    #[test]
    fn parts_at_one_url_share_one_connection() {
        let c = Connections::default();
        let a = c.nats("nats://127.0.0.1:4222");
        assert!(Arc::ptr_eq(&a, &c.nats("nats://127.0.0.1:4222")));
        assert!(!Arc::ptr_eq(&a, &c.nats("nats://127.0.0.1:4223")));
        let other = Connections::default();
        assert!(!Arc::ptr_eq(&a, &other.nats("nats://127.0.0.1:4222")));
    }
}
