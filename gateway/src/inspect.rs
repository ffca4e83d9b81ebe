//! What the registry knows and what each node says of itself: the
//! gateway's dashboard and the `micro` CLI both read services this way.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use micro::Error;
use micro::broker::{Message, SubscribeOptions};
use micro::registry::{Record, Registry};
use serde::Serialize;
use serde_json::Value;

/// One service name: its versions and how many nodes serve it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ServiceRow {
    /// The service's name.
    pub name: String,
    /// Its versions, in the registry's order.
    pub versions: Vec<String>,
    /// The nodes of all its versions.
    pub nodes: usize,
}

/// Every service in `registry`, by name.
///
/// # Errors
/// The registry's error (503 when it cannot be reached).
pub async fn services(registry: &dyn Registry) -> micro::Result<Vec<ServiceRow>> {
    let records = registry.list_services().await?;
    let mut by_name: BTreeMap<String, ServiceRow> = BTreeMap::new();
    for r in records {
        let row = by_name.entry(r.name.clone()).or_insert_with(|| ServiceRow {
            name: r.name.clone(),
            versions: Vec::new(),
            nodes: 0,
        });
        row.versions.push(r.version);
        row.nodes += r.nodes.len();
    }
    Ok(by_name.into_values().collect())
}

/// The records of `service`, one per version, with the JSON Schemas a
/// registry record had to leave out (an mDNS record has room for little)
/// filled in from a node's `GET /schemas`.
///
/// # Errors
/// 404 for a service with no nodes, 503 for a registry that cannot be
/// reached.
pub async fn records(registry: &dyn Registry, service: &str) -> micro::Result<Vec<Record>> {
    let mut records = registry.get_service(service).await?;
    for record in &mut records {
        fill_schemas(record).await;
    }
    Ok(records)
}

async fn fill_schemas(record: &mut Record) {
    let missing = record
        .endpoints
        .iter()
        .any(|e| e.request_schema.is_none() && e.response_schema.is_none());
    let Some(node) = record.nodes.first() else {
        return;
    };
    if !missing {
        return;
    }
    let Ok(Ok((true, served))) =
        tokio::time::timeout(Duration::from_secs(3), get_json(&node.address, "/schemas")).await
    else {
        return;
    };
    let Some(served) = served["endpoints"].as_array() else {
        return;
    };
    for endpoint in &mut record.endpoints {
        if let Some(s) = served.iter().find(|s| s["name"] == endpoint.name.as_str()) {
            let take = |v: &Value| (!v.is_null()).then(|| v.clone());
            endpoint.request_schema = endpoint
                .request_schema
                .take()
                .or_else(|| take(&s["request_schema"]));
            endpoint.response_schema = endpoint
                .response_schema
                .take()
                .or_else(|| take(&s["response_schema"]));
        }
    }
}

/// `GET http://<address><path>`: whether it was a success, and the body as
/// JSON (or as a string when it is not JSON).
///
/// # Errors
/// Why the node could not be asked.
pub async fn get_json(address: &str, path: &str) -> Result<(bool, Value), String> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let uri: http::Uri = format!("http://{address}{path}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let reply = client.get(uri).await.map_err(|e| e.to_string())?;
    let ok = reply.status().is_success();
    let body = reply
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned().into());
    Ok((ok, value))
}

/// One node's answer to `GET /health`.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct NodeHealth {
    /// The node's id.
    pub node: String,
    /// Where it listens.
    pub address: String,
    /// The service version it serves.
    pub version: String,
    /// `up`, `down`, or `unreachable`.
    pub status: String,
    /// The node's own report, or why it could not be had.
    pub detail: Value,
}

/// Every node of `service` asked for its `/health`, at once, each within 5 s.
///
/// # Errors
/// 404 for a service with no nodes, 503 for a registry that cannot be
/// reached.
pub async fn health(registry: &dyn Registry, service: &str) -> micro::Result<Vec<NodeHealth>> {
    let records = registry.get_service(service).await?;
    let asks = records.iter().flat_map(|r| {
        r.nodes.iter().map(move |node| async move {
            let asked = get_json(&node.address, "/health");
            let (status, detail) = match tokio::time::timeout(Duration::from_secs(5), asked).await {
                Ok(Ok((true, report))) => ("up", report),
                Ok(Ok((false, report))) => ("down", report),
                Ok(Err(e)) => ("unreachable", e.into()),
                Err(_) => ("unreachable", "no answer within 5 s".into()),
            };
            NodeHealth {
                node: node.id.clone(),
                address: node.address.clone(),
                version: r.version.clone(),
                status: status.to_owned(),
                detail,
            }
        })
    });
    Ok(futures_util::future::join_all(asks).await)
}

/// A live tail of a topic: a subscriber of its own (a service named
/// `micro-gateway-tail`, so that brokers that deliver to a service's port
/// reach it) handing each message on as JSON.
#[derive(Debug)]
pub struct Tail {
    running: micro::ServiceHandle,
}

impl Tail {
    /// Subscribes to `topic` on `backends`' broker; each message goes to
    /// `messages` as `{"topic", "id", "metadata", "payload"}` (the payload
    /// as JSON, or as text when it does not decode). Messages that find
    /// `messages` full are dropped, not queued without bound.
    ///
    /// # Errors
    /// The broker's or the registry's error when subscribing.
    pub async fn start(
        backends: &micro::Backends,
        topic: &str,
        messages: tokio::sync::mpsc::Sender<Value>,
    ) -> micro::Result<Self> {
        if topic.is_empty() {
            return Err(Error::bad_request("a topic to tail is needed"));
        }
        let running = micro::Service::new("micro-gateway-tail")
            .backends(backends)
            .subscribe(
                topic,
                SubscribeOptions::default(),
                micro::broker::handler(move |message: Message| {
                    let messages = messages.clone();
                    async move {
                        let payload = message
                            .decode::<Value>()
                            .unwrap_or_else(|_| String::from_utf8_lossy(&message.body).into());
                        let metadata: BTreeMap<&str, &str> = message.metadata.iter().collect();
                        let _ = messages.try_send(serde_json::json!({
                            "topic": message.topic,
                            "id": message.id,
                            "metadata": metadata,
                            "payload": payload,
                        }));
                        Ok(())
                    }
                }),
            )
            .start()
            .await?;
        Ok(Self { running })
    }

    /// Ends the subscription and deregisters its subscriber.
    pub async fn stop(self) {
        if let Err(e) = self.running.stop().await {
            tracing::debug!(error = %e, "gateway: stopping a tail");
        }
    }
}
