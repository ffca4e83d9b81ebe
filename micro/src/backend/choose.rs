//! How a bundle chooses each part from `MICRO_<PART>` and
//! `MICRO_<PART>_ADDRESS` (a profile filling in what is unset), and the
//! connections its parts share, one per server URL.

#[cfg(any(
    feature = "nats",
    feature = "redis",
    feature = "postgres",
    feature = "etcd",
    feature = "rabbitmq",
    feature = "mqtt"
))]
use std::collections::HashMap;
use std::sync::Arc;
#[cfg(any(
    feature = "nats",
    feature = "redis",
    feature = "postgres",
    feature = "etcd",
    feature = "rabbitmq",
    feature = "mqtt"
))]
use std::sync::Mutex;

use super::env::{self, Choice, unusable};
#[cfg(feature = "etcd")]
use super::etcd;
#[cfg(feature = "nats")]
use super::nats;
#[cfg(feature = "postgres")]
use super::postgres;
#[cfg(feature = "redis")]
use super::redis;
use crate::broker::{Broker, HttpBroker, MemoryBroker};
use crate::events::{Events, MemoryEvents};
use crate::registry::{MdnsRegistry, MemoryRegistry, Registry};
use crate::store::{FileStore, MemoryStore, Store, Unavailable};
use crate::sync::{Locks, MemoryLocks};

/// The connections of the parts of one bundle, one per server URL (empty
/// when no backend that connects to a server is compiled in).
#[derive(Debug, Default)]
pub(super) struct Connections {
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

/// The connection in `map` for `url`, made by `make` the first time any
/// part asks for it.
#[cfg(any(
    feature = "nats",
    feature = "rabbitmq",
    feature = "mqtt",
    feature = "redis",
    feature = "postgres",
    feature = "etcd"
))]
fn shared<T, E>(
    map: &Mutex<HashMap<String, Arc<T>>>,
    url: &str,
    make: impl FnOnce(&str) -> Result<Arc<T>, E>,
) -> Result<Arc<T>, E> {
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = map.get(url) {
        return Ok(c.clone());
    }
    let c = make(url)?;
    map.insert(url.to_owned(), c.clone());
    Ok(c)
}

/// `shared` for a connection that is made without failing (it connects
/// later, and again when it drops).
#[cfg(any(
    feature = "nats",
    feature = "rabbitmq",
    feature = "mqtt",
    feature = "etcd"
))]
fn shared_lazy<T>(
    map: &Mutex<HashMap<String, Arc<T>>>,
    url: &str,
    make: impl FnOnce(&str) -> Arc<T>,
) -> Arc<T> {
    let Ok(c) = shared::<T, std::convert::Infallible>(map, url, |url| Ok(make(url)));
    c
}

/// Each part that asks for the server at one URL gets the same connection.
impl Connections {
    /// The pool of connections to the Postgres server at `url`.
    ///
    /// # Errors
    /// Why the driver does not take the URL.
    #[cfg(feature = "postgres")]
    pub(super) fn postgres(&self, url: &str) -> Result<Arc<postgres::PostgresPool>, String> {
        shared(&self.postgres, url, postgres::PostgresPool::new)
    }

    /// The connection to the Redis server at `url`.
    ///
    /// # Errors
    /// Why Redis does not take the URL.
    #[cfg(feature = "redis")]
    pub(super) fn redis(&self, url: &str) -> Result<Arc<redis::RedisConnection>, String> {
        shared(&self.redis, url, redis::RedisConnection::new)
    }

    /// The connection to the etcd cluster at `address`.
    #[cfg(feature = "etcd")]
    pub(super) fn etcd(&self, address: &str) -> Arc<etcd::EtcdConnection> {
        shared_lazy(&self.etcd, address, etcd::EtcdConnection::new)
    }

    /// The connection to the MQTT broker at `url`.
    #[cfg(feature = "mqtt")]
    pub(super) fn mqtt(&self, url: &str) -> Arc<crate::broker::MqttConnection> {
        shared_lazy(&self.mqtt, url, |url| {
            crate::broker::MqttConnection::new(url)
        })
    }

    /// The connection to the RabbitMQ server at `url`.
    #[cfg(feature = "rabbitmq")]
    pub(super) fn rabbitmq(&self, url: &str) -> Arc<crate::broker::RabbitConnection> {
        shared_lazy(&self.rabbitmq, url, |url| {
            crate::broker::RabbitConnection::new(url)
        })
    }

    /// The connection to the NATS server at `url`.
    #[cfg(feature = "nats")]
    pub(super) fn nats(&self, url: &str) -> Arc<nats::NatsConnection> {
        shared_lazy(&self.nats, url, |url| nats::NatsConnection::new(url))
    }
}

#[cfg_attr(not(any(feature = "nats", feature = "redis")), allow(unused_variables))]
pub(super) fn choose_events(
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
    not(any(
        feature = "redis",
        feature = "postgres",
        feature = "nats",
        feature = "etcd"
    )),
    allow(unused_variables)
)]
pub(super) fn choose_sync(
    var: &impl Fn(&str) -> Option<String>,
    connections: &Connections,
) -> Arc<dyn Locks> {
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
        #[cfg(feature = "etcd")]
        Some("etcd") => {
            let url = address.unwrap_or_else(|| ETCD_DEFAULT_URL.to_owned());
            Arc::new(crate::sync::EtcdLocks::on(connections.etcd(&url)))
        }
        None | Some("memory") => Arc::new(MemoryLocks::new()),
        Some(other) => {
            let choices = [
                Choice::built_in("memory"),
                Choice::feature("etcd", cfg!(feature = "etcd")),
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

/// The etcd cluster the registry and the locks use when given none.
#[cfg(feature = "etcd")]
const ETCD_DEFAULT_URL: &str = "http://127.0.0.1:2379";

#[cfg_attr(not(any(feature = "nats", feature = "etcd")), allow(unused_variables))]
pub(super) fn choose_registry(
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
pub(super) fn choose_store(
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
pub(super) fn profiled(var: impl Fn(&str) -> Option<String>) -> impl Fn(&str) -> Option<String> {
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
pub(super) fn choose_broker(
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
