//! `micro services`, `micro describe`, `micro health`: what the registry
//! knows, and what each node says of itself.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use micro::registry::Record;
use serde::Serialize;

use crate::output::{self, Failure};

/// `micro services`: one row per service, with its versions and nodes.
pub(crate) async fn services(backends: &micro::Backends, json: bool) -> Result<(), Failure> {
    let records = backends.registry().list_services().await?;
    let mut by_name: BTreeMap<&str, (Vec<&str>, usize)> = BTreeMap::new();
    for r in &records {
        let entry = by_name.entry(&r.name).or_default();
        entry.0.push(&r.version);
        entry.1 += r.nodes.len();
    }
    if json {
        #[derive(Serialize)]
        struct Row<'a> {
            name: &'a str,
            versions: Vec<&'a str>,
            nodes: usize,
        }
        let rows: Vec<Row<'_>> = by_name
            .iter()
            .map(|(name, (versions, nodes))| Row {
                name,
                versions: versions.clone(),
                nodes: *nodes,
            })
            .collect();
        output::json(&rows);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = by_name
        .iter()
        .map(|(name, (versions, nodes))| {
            vec![(*name).to_owned(), versions.join(","), nodes.to_string()]
        })
        .collect();
    output::table(&["SERVICE", "VERSIONS", "NODES"], &rows);
    Ok(())
}

/// `micro describe`: each version's endpoints and nodes.
pub(crate) async fn describe(
    backends: &micro::Backends,
    service: &str,
    json: bool,
) -> Result<(), Failure> {
    let mut records = backends.registry().get_service(service).await?;
    for record in &mut records {
        fill_schemas(record).await;
    }
    if json {
        output::json(&records);
        return Ok(());
    }
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            println!();
        }
        describe_one(record);
    }
    Ok(())
}

/// The schemas a registry record had to leave out (an mDNS record has
/// room for little), from the first node's `GET /schemas`.
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
            let take = |v: &serde_json::Value| (!v.is_null()).then(|| v.clone());
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
async fn get_json(address: &str, path: &str) -> Result<(bool, serde_json::Value), String> {
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

fn describe_one(record: &Record) {
    println!("{} {}", record.name, record.version);
    for (k, v) in &record.metadata {
        println!("  {k}={v}");
    }
    println!();
    let endpoints: Vec<Vec<String>> = record
        .endpoints
        .iter()
        .map(|e| {
            let kind = e
                .metadata
                .get("stream.kind")
                .map_or_else(|| "call".to_owned(), |k| format!("stream ({k})"));
            vec![e.name.clone(), e.request.clone(), e.response.clone(), kind]
        })
        .collect();
    output::table(&["ENDPOINT", "REQUEST", "RESPONSE", "KIND"], &endpoints);
    for e in &record.endpoints {
        for (what, schema) in [
            ("request", &e.request_schema),
            ("response", &e.response_schema),
        ] {
            if let Some(schema) = schema {
                println!();
                println!("{} {what} schema:", e.name);
                println!(
                    "{}",
                    serde_json::to_string_pretty(schema).unwrap_or_default()
                );
            }
        }
    }
    println!();
    let nodes: Vec<Vec<String>> = record
        .nodes
        .iter()
        .map(|n| {
            let metadata: Vec<String> = n
                .metadata
                .iter()
                .filter(|(k, _)| !k.starts_with("sub.") || n.metadata.len() < 12)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            vec![n.id.clone(), n.address.clone(), metadata.join(" ")]
        })
        .collect();
    output::table(&["NODE", "ADDRESS", "METADATA"], &nodes);
}

/// One node's answer to `GET /health`.
#[derive(Debug, Serialize)]
struct Health {
    node: String,
    address: String,
    /// `up`, `down`, or `unreachable`.
    status: String,
    /// The node's own report, or why it could not be had.
    detail: serde_json::Value,
}

/// `micro health`: every node's `/health`; fails (exit 4) if any node is
/// not up.
pub(crate) async fn health(
    backends: &micro::Backends,
    service: &str,
    json: bool,
) -> Result<(), Failure> {
    let records = backends.registry().get_service(service).await?;
    let mut all = Vec::new();
    for node in records.iter().flat_map(|r| &r.nodes) {
        let asked = get_json(&node.address, "/health");
        let (status, detail) = match tokio::time::timeout(Duration::from_secs(5), asked).await {
            Ok(Ok((true, report))) => ("up", report),
            Ok(Ok((false, report))) => ("down", report),
            Ok(Err(e)) => ("unreachable", e.into()),
            Err(_) => ("unreachable", "no answer within 5 s".into()),
        };
        all.push(Health {
            node: node.id.clone(),
            address: node.address.clone(),
            status: status.to_owned(),
            detail,
        });
    }
    if json {
        output::json(&all);
    } else {
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|h| {
                let checks = match &h.detail {
                    serde_json::Value::Object(o) => o
                        .get("checks")
                        .and_then(|c| c.as_array())
                        .map(|checks| {
                            checks
                                .iter()
                                .map(|c| {
                                    let name = c["name"].as_str().unwrap_or("?");
                                    let status = c["status"].as_str().unwrap_or("?");
                                    match c["detail"].as_str() {
                                        Some(d) => format!("{name}={status} ({d})"),
                                        None => format!("{name}={status}"),
                                    }
                                })
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .unwrap_or_default(),
                    other => other.as_str().unwrap_or_default().to_owned(),
                };
                vec![h.node.clone(), h.address.clone(), h.status.clone(), checks]
            })
            .collect();
        output::table(&["NODE", "ADDRESS", "STATUS", "CHECKS"], &rows);
    }
    let down = all.iter().filter(|h| h.status != "up").count();
    if down > 0 {
        return Err(Failure::Micro(micro::Error::new(
            "",
            503,
            format!("{down} of {} nodes of {service} are not up", all.len()),
        )));
    }
    Ok(())
}

/// `micro openapi`: the document a node of the service serves at
/// `GET /openapi.json`, trying each node until one answers.
pub(crate) async fn openapi(backends: &micro::Backends, service: &str) -> Result<(), Failure> {
    let records = backends.registry().get_service(service).await?;
    let mut last = String::from("no node");
    for node in records.iter().flat_map(|r| &r.nodes) {
        match tokio::time::timeout(
            Duration::from_secs(5),
            get_json(&node.address, "/openapi.json"),
        )
        .await
        {
            Ok(Ok((true, doc))) => {
                output::json(&doc);
                return Ok(());
            }
            Ok(Ok((false, reply))) => last = format!("{} answered {reply}", node.address),
            Ok(Err(e)) => last = format!("{}: {e}", node.address),
            Err(_) => last = format!("{}: no answer within 5 s", node.address),
        }
    }
    Err(Failure::Micro(micro::Error::unavailable(format!(
        "no node of {service} gave its OpenAPI document: {last}"
    ))))
}
