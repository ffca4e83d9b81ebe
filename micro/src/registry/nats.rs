//! A registry in a NATS JetStream key-value bucket: a key per node with a
//! per-key TTL, and a watch.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;

use super::keyed::{Known, found, merge};
use super::{Event, Record, RegisterOptions, Registry, RegistryError, Watcher};
use crate::backend::nats::{NatsConnection, hex};

/// The bucket every node is a key of.
const BUCKET: &str = "micro-registry";

/// How long the server keeps the marker an expired or deleted key leaves,
/// so that watchers see the node go.
const MARKER_TTL: Duration = Duration::from_secs(300);

/// A registry in NATS JetStream key-value (cargo feature `nats`; nats-server
/// 2.11 or later, for per-key TTLs).
///
/// Each node is a key of the bucket `micro-registry` (made on first use):
/// `<service>.<version>.<node id>`, each part hex-encoded, holding the
/// node's record as JSON. A registration writes the key with the
/// registration's TTL, so a node that stops renewing (killed with
/// `SIGKILL`, say) is removed by the server when its TTL runs out, and
/// watchers see it go. Lookups read the keys: no scatter/gather, no wait.
#[derive(Clone, Debug)]
pub struct NatsRegistry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    connection: Arc<NatsConnection>,
    bucket: tokio::sync::Mutex<Option<(async_nats::jetstream::Context, kv::Store)>>,
}

impl NatsRegistry {
    /// A registry on the NATS server at `url`, on a connection of its own.
    pub fn new(url: impl Into<String>) -> Self {
        Self::on(NatsConnection::new(url))
    }

    /// A registry over a client the caller opened.
    pub fn with_client(client: async_nats::Client) -> Self {
        Self::on(NatsConnection::from_client(client))
    }

    /// A registry on `connection`, which other parts may share.
    pub(crate) fn on(connection: Arc<NatsConnection>) -> Self {
        Self {
            inner: Arc::new(Inner {
                connection,
                bucket: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The bucket, made if the server has none (on first use, and after a
    /// server that lost its data came back).
    async fn bucket(&self) -> Result<(async_nats::jetstream::Context, kv::Store), RegistryError> {
        let mut bucket = self.inner.bucket.lock().await;
        if let Some(b) = &*bucket {
            return Ok(b.clone());
        }
        let client = self
            .inner
            .connection
            .client()
            .await
            .map_err(RegistryError::Backend)?;
        let js = async_nats::jetstream::new(client.clone());
        let store = match js.get_key_value(BUCKET).await {
            Ok(store) => store,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: BUCKET.into(),
                    history: 1,
                    limit_markers: Some(MARKER_TTL),
                    ..Default::default()
                })
                .await
                .map_err(|e| {
                    let version = client.server_info().version;
                    RegistryError::Backend(format!(
                        "making the NATS KV bucket {BUCKET} on nats-server {version} \
                         (the registry's per-key TTLs need 2.11 or later): {e}"
                    ))
                })?,
        };
        *bucket = Some((js.clone(), store.clone()));
        Ok((js, store))
    }

    /// Forgets the bucket after a write failed, so that the next use looks
    /// for it again (a restarted server may have lost it).
    async fn forget(&self) {
        *self.inner.bucket.lock().await = None;
    }

    /// The records of the nodes whose keys start with `prefix` (all, for
    /// `None`), one per node: the last value of each matching key, read
    /// through one consumer that the server filters by the prefix, so a
    /// lookup costs the same however many other services the bucket holds.
    async fn nodes(&self, prefix: Option<&str>) -> Result<Vec<Record>, RegistryError> {
        use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy, push};
        let (_, store) = self.bucket().await?;
        let client = self
            .inner
            .connection
            .client()
            .await
            .map_err(RegistryError::Backend)?;
        let subject = format!("{}{}>", store.prefix, prefix.unwrap_or(""));
        let consumer = store
            .stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: client.new_inbox(),
                description: Some("micro registry lookup".into()),
                filter_subject: subject,
                replay_policy: ReplayPolicy::Instant,
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(backend)?;
        let mut out = Vec::new();
        if consumer.cached_info().num_pending == 0 {
            return Ok(out);
        }
        let mut messages = consumer.messages().await.map_err(backend)?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(backend)?;
            let pending = message.info().map_err(backend)?.pending;
            // A delete or an expiry leaves a marker as the key's last
            // message: the node is gone.
            let gone = message.headers.as_ref().is_some_and(|h| {
                h.get("KV-Operation").is_some() || h.get("Nats-Marker-Reason").is_some()
            });
            if !gone && let Ok(record) = serde_json::from_slice::<Record>(&message.payload) {
                out.push(record);
            }
            if pending == 0 {
                break;
            }
        }
        Ok(out)
    }
}

fn backend(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Backend(format!("nats: {e}"))
}

/// The key of `node` of `record`.
fn key(record: &Record, node: &str) -> String {
    format!(
        "{}.{}.{}",
        hex(&record.name),
        hex(&record.version),
        hex(node)
    )
}

impl Registry for NatsRegistry {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn register<'a>(
        &'a self,
        service: &'a Record,
        options: RegisterOptions,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            super::check(service)?;
            let (js, _) = self.bucket().await?;
            for node in &service.nodes {
                let mut one = service.clone();
                one.nodes = vec![node.clone()];
                let value = serde_json::to_vec(&one).map_err(backend)?;
                let mut headers = async_nats::HeaderMap::new();
                if let Some(ttl) = options.ttl {
                    // Whole seconds, rounded up, at least one.
                    let secs = ttl.as_secs_f64().ceil().max(1.0) as u64;
                    headers.insert("Nats-TTL", format!("{secs}s").as_str());
                }
                let subject = format!("$KV.{BUCKET}.{}", key(service, &node.id));
                let stored = async {
                    js.publish_with_headers(subject, headers, value.into())
                        .await
                        .map_err(backend)?
                        .await
                        .map_err(backend)
                };
                if let Err(e) = stored.await {
                    self.forget().await;
                    return Err(e);
                }
            }
            Ok(())
        })
    }

    fn deregister<'a>(&'a self, service: &'a Record) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let (_, store) = self.bucket().await?;
            for node in &service.nodes {
                store
                    .delete(key(service, &node.id))
                    .await
                    .map_err(backend)?;
            }
            Ok(())
        })
    }

    fn get_service<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Record>, RegistryError>> {
        Box::pin(async move {
            let prefix = format!("{}.", hex(name));
            found(name, self.nodes(Some(&prefix)).await?)
        })
    }

    fn list_services(&self) -> BoxFuture<'_, Result<Vec<Record>, RegistryError>> {
        Box::pin(async move { Ok(merge(self.nodes(None).await?)) })
    }

    fn watch(&self) -> BoxFuture<'_, Result<Watcher, RegistryError>> {
        Box::pin(async move {
            let (_, store) = self.bucket().await?;
            // What is there now, so that the first change of a service is
            // told apart from a new one.
            let mut known = Known::default();
            let entries = store.watch_all().await.map_err(backend)?;
            for record in self.nodes(None).await? {
                if let Some(node) = record.nodes.first() {
                    known.insert(key(&record, &node.id), record.clone());
                }
            }
            let stream = entries.filter_map(move |entry| {
                let event = match entry {
                    Err(e) => Some(Err(backend(e))),
                    Ok(entry) => change(&mut known, entry),
                };
                std::future::ready(event)
            });
            Ok(Watcher::new(stream))
        })
    }
}

/// The event one KV change makes, given the nodes known before it.
fn change(known: &mut Known, entry: kv::Entry) -> Option<Result<Event, RegistryError>> {
    match entry.operation {
        kv::Operation::Put => {
            let record: Record = serde_json::from_slice(&entry.value).ok()?;
            known.put(entry.key, record).map(Ok)
        }
        kv::Operation::Delete | kv::Operation::Purge => known.remove(&entry.key).map(Ok),
    }
}
