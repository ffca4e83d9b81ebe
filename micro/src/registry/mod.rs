//! Service discovery: where the nodes of a service are.
//!
//! A [`Registry`] holds one record per service name and version: its
//! endpoints and the nodes (id, address, metadata) that serve it. Services
//! register themselves when they start and deregister when they stop;
//! clients look services up by name.
//!
//! [`MdnsRegistry`], the default, finds services on the local network with
//! multicast DNS and needs no server. [`MemoryRegistry`] serves one process,
//! tests, and places without multicast. For clusters, where multicast does
//! not reach (containers, Kubernetes, VPNs, several networks), `NatsRegistry`
//! (feature `nats`) and `EtcdRegistry` (feature `etcd`) keep a key per node
//! with a TTL in a server the cluster already runs. The process-wide default is that
//! of [`Backends::default`](crate::Backends), chosen by `MICRO_REGISTRY`.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use micro::registry::{MemoryRegistry, Node, Registry, RegisterOptions, Record};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = MemoryRegistry::new();
//! let svc = Record::new("helloworld")
//!     .with_node(Node::new("helloworld-1", "127.0.0.1:8080"));
//! registry.register(&svc, RegisterOptions::default()).await?;
//!
//! let found = registry.get_service("helloworld").await?;
//! assert_eq!(found[0].nodes[0].address, "127.0.0.1:8080");
//!
//! registry.deregister(&svc).await?;
//! assert!(registry.get_service("helloworld").await.is_err());
//! # Ok(()) }
//! ```

#[cfg(feature = "etcd")]
#[cfg_attr(docsrs, doc(cfg(feature = "etcd")))]
mod etcd;
#[cfg(any(feature = "nats", feature = "etcd"))]
mod keyed;
mod mdns;
mod memory;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
mod nats;

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use futures_util::Stream;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::code;

#[cfg(feature = "etcd")]
pub use etcd::EtcdRegistry;
pub use mdns::{MdnsRegistry, MdnsRegistryBuilder, SERVICE_TYPE};
pub use memory::MemoryRegistry;
#[cfg(feature = "nats")]
pub use nats::NatsRegistry;

/// Checks a registration: a name, and an id and an address on every node.
pub(crate) fn check(service: &Record) -> Result<(), RegistryError> {
    if service.name.is_empty() {
        return Err(RegistryError::Invalid("service name is empty".into()));
    }
    if let Some(n) = service
        .nodes
        .iter()
        .find(|n| n.id.is_empty() || n.address.is_empty())
    {
        return Err(RegistryError::Invalid(format!(
            "node {:?} of service \"{}\" needs an id and an address",
            n.id, service.name
        )));
    }
    Ok(())
}

/// A service's record: name, version, metadata, endpoints and nodes.
///
/// Its JSON is the registry record of docs/wire.md.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Record {
    /// The service name, as clients call it (`helloworld`).
    pub name: String,
    /// The version; `latest` unless the service says otherwise.
    #[serde(default)]
    pub version: String,
    /// Service-wide metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The endpoints every node of this version serves.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// The nodes that serve this version.
    #[serde(default)]
    pub nodes: Vec<Node>,
}

impl Record {
    /// A record for `name`, version `latest`, with no endpoints or nodes.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: "latest".to_owned(),
            ..Self::default()
        }
    }

    /// This record with version `version`.
    #[must_use]
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// This record with `node` added.
    #[must_use]
    pub fn with_node(mut self, node: Node) -> Self {
        self.nodes.push(node);
        self
    }

    /// This record with `endpoint` added.
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoints.push(endpoint);
        self
    }
}

/// One endpoint of a service: its name and its request and response types.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Endpoint {
    /// `Type.Method`, e.g. `Helloworld.Greeting`.
    pub name: String,
    /// The request type's name.
    #[serde(default)]
    pub request: String,
    /// The response type's name.
    #[serde(default)]
    pub response: String,
    /// Endpoint metadata (for example `stream`).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The request's JSON Schema, when its type has one (micro's `schemas`
    /// feature, and a type that derives `schemars::JsonSchema`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_schema: Option<serde_json::Value>,
    /// The response's JSON Schema, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_schema: Option<serde_json::Value>,
}

impl Endpoint {
    /// An endpoint with its request and response type names.
    pub fn new(
        name: impl Into<String>,
        request: impl Into<String>,
        response: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            request: request.into(),
            response: response.into(),
            metadata: BTreeMap::new(),
            request_schema: None,
            response_schema: None,
        }
    }

    /// This endpoint with the JSON Schemas of its request and response.
    #[must_use]
    pub fn with_schemas(
        mut self,
        request: Option<serde_json::Value>,
        response: Option<serde_json::Value>,
    ) -> Self {
        self.request_schema = request;
        self.response_schema = response;
        self
    }

    /// This endpoint with metadata `key` set to `value`.
    #[must_use]
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// One running instance of a service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Node {
    /// Unique id: `<service>-<uuid>`.
    pub id: String,
    /// `host:port` where the node listens.
    pub address: String,
    /// Node metadata: `protocol`, `transport`, `broker`, `registry`, ….
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl Node {
    /// A node with an id and an address.
    pub fn new(id: impl Into<String>, address: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            address: address.into(),
            metadata: BTreeMap::new(),
        }
    }

    /// This node with metadata `key` set to `value`.
    #[must_use]
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// Options for [`Registry::register`].
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct RegisterOptions {
    /// How long the registration lasts without being renewed. `None` (the
    /// default) means until deregistered.
    pub ttl: Option<Duration>,
}

impl RegisterOptions {
    /// Options with a time to live.
    pub fn with_ttl(ttl: Duration) -> Self {
        Self { ttl: Some(ttl) }
    }
}

/// What changed in a [`Watcher`] event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// A service version appeared.
    Create,
    /// Nodes of a known service version were added, changed or removed.
    Update,
    /// The last node of a service version went away.
    Delete,
}

/// A change seen by a [`Watcher`]: the kind and the service's record after
/// it (for `Delete`, the record as it was, with the nodes that left).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The record it happened to.
    pub service: Record,
}

/// A stream of registry [`Event`]s, from [`Registry::watch`].
pub struct Watcher {
    inner: Pin<Box<dyn Stream<Item = Result<Event, RegistryError>> + Send>>,
}

impl Watcher {
    /// A watcher over any stream of events; for registry implementations.
    pub fn new(stream: impl Stream<Item = Result<Event, RegistryError>> + Send + 'static) -> Self {
        Self {
            inner: Box::pin(stream),
        }
    }

    /// The next event; `None` once the registry has gone away.
    pub async fn next(&mut self) -> Option<Result<Event, RegistryError>> {
        futures_util::StreamExt::next(self).await
    }
}

impl fmt::Debug for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}

impl Stream for Watcher {
    type Item = Result<Event, RegistryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// What a registry operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No node of the service is registered.
    #[error("service \"{0}\" not found in registry")]
    NotFound(String),
    /// The record is not valid (no name, a node without id or address).
    #[error("invalid registration: {0}")]
    Invalid(String),
    /// The watcher fell behind and missed events; re-read the registry.
    #[error("watcher lagged and missed {0} events")]
    Lagged(u64),
    /// The backend failed.
    #[error("registry backend: {0}")]
    Backend(String),
}

impl From<RegistryError> for crate::Error {
    fn from(err: RegistryError) -> Self {
        let code = match &err {
            RegistryError::NotFound(_) => code::NOT_FOUND,
            RegistryError::Invalid(_) => code::BAD_REQUEST,
            RegistryError::Backend(_) => code::UNAVAILABLE,
            RegistryError::Lagged(_) => code::INTERNAL,
        };
        crate::Error::new("", code, err.to_string()).with_source(err)
    }
}

/// Finds services: register, deregister, get, list and watch.
///
/// # Contract
/// - `register` is idempotent: registering a node again renews it (and its
///   TTL) and replaces its address and metadata. Nodes of one name and
///   version accumulate.
/// - `deregister` removes the nodes named in the record; a version with no
///   nodes left is gone. Deregistering an unknown node is not an error.
/// - `get_service` returns one record per version, each with at least one
///   node, or [`RegistryError::NotFound`].
/// - Every method may be called concurrently from many tasks.
///
/// The trait is object safe: services and clients hold an
/// `Arc<dyn Registry>`, chosen at run time.
///
/// # Example
///
/// ```
/// use micro::registry::{MemoryRegistry, Registry};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let registry: std::sync::Arc<dyn Registry> = std::sync::Arc::new(MemoryRegistry::new());
/// assert!(registry.list_services().await.unwrap().is_empty());
/// assert_eq!(
///     registry.get_service("nope").await.unwrap_err().to_string(),
///     "service \"nope\" not found in registry",
/// );
/// # }
/// ```
pub trait Registry: Send + Sync + fmt::Debug + 'static {
    /// The backend's name, as in node metadata (`memory`, `mdns`).
    fn name(&self) -> &'static str;

    /// Registers (or renews) the nodes of `service`.
    fn register<'a>(
        &'a self,
        service: &'a Record,
        options: RegisterOptions,
    ) -> BoxFuture<'a, Result<(), RegistryError>>;

    /// Removes the nodes of `service`.
    fn deregister<'a>(&'a self, service: &'a Record) -> BoxFuture<'a, Result<(), RegistryError>>;

    /// Every version of the service `name`, with its nodes.
    fn get_service<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Record>, RegistryError>>;

    /// Every registered service version.
    fn list_services(&self) -> BoxFuture<'_, Result<Vec<Record>, RegistryError>>;

    /// A stream of changes from now on.
    fn watch(&self) -> BoxFuture<'_, Result<Watcher, RegistryError>>;
}

fn _assert_dyn(_: &dyn Registry) {}
