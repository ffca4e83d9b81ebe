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

mod choose;
mod env;
#[cfg(feature = "etcd")]
pub(crate) mod etcd;
#[cfg(feature = "nats")]
pub(crate) mod nats;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "redis")]
pub(crate) mod redis;

use std::fmt;
use std::sync::{Arc, OnceLock};

pub(crate) use choose::config_store;
use choose::{
    Connections, choose_broker, choose_events, choose_registry, choose_store, choose_sync, profiled,
};
#[cfg(feature = "nats")]
pub(crate) use env::from_env;

use crate::broker::{Broker, MemoryBroker};
use crate::events::{Events, MemoryEvents};
use crate::registry::{MemoryRegistry, Registry};
use crate::store::{MemoryStore, Store};
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
