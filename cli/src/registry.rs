//! `micro services`, `micro describe`, `micro health`: what the registry
//! knows, and what each node says of itself.

use std::time::Duration;

use micro::registry::Record;
use micro_gateway::inspect;

use crate::output::{self, Failure};

/// `micro services`: one row per service, with its versions and nodes.
pub(crate) async fn services(backends: &micro::Backends, json: bool) -> Result<(), Failure> {
    let rows = inspect::services(backends.registry().as_ref()).await?;
    if json {
        output::json(&rows);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                row.name.clone(),
                row.versions.join(","),
                row.nodes.to_string(),
            ]
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
    let records = inspect::records(backends.registry().as_ref(), service).await?;
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

fn describe_one(record: &Record) {
    println!("{} {}", record.name, record.version);
    for (k, v) in &record.metadata {
        println!("  {k}={v}");
    }
    println!();
    // A protobuf service's endpoints are gRPC methods too: their paths get
    // a column of their own.
    let grpc = record
        .endpoints
        .iter()
        .any(|e| e.metadata.contains_key(micro::codec::GRPC_METADATA));
    let endpoints: Vec<Vec<String>> = record
        .endpoints
        .iter()
        .map(|e| {
            let kind = e
                .metadata
                .get("stream.kind")
                .map_or_else(|| "call".to_owned(), |k| format!("stream ({k})"));
            let mut row = vec![e.name.clone(), e.request.clone(), e.response.clone(), kind];
            if grpc {
                let path = e.metadata.get(micro::codec::GRPC_METADATA);
                row.push(path.cloned().unwrap_or_else(|| "-".to_owned()));
            }
            row
        })
        .collect();
    let mut headers = vec!["ENDPOINT", "REQUEST", "RESPONSE", "KIND"];
    if grpc {
        headers.push("GRPC");
    }
    output::table(&headers, &endpoints);
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

/// `micro health`: every node's `/health`; fails (exit 4) if any node is
/// not up.
pub(crate) async fn health(
    backends: &micro::Backends,
    service: &str,
    json: bool,
) -> Result<(), Failure> {
    let all = inspect::health(backends.registry().as_ref(), service).await?;
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
            inspect::get_json(&node.address, "/openapi.json"),
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
