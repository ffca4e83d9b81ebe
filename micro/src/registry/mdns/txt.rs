//! What a node's DNS-SD records carry: its TXT properties (service,
//! version, metadata, the endpoint list compressed and split to fit),
//! read back into a registry record, and its instance name.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::{DEFAULT_TTL, SERVICE_TYPE};
use crate::registry::{Endpoint, Node, Record};

/// The largest encoded endpoint list published in TXT records. A single
/// DNS record travels alone in a packet of up to ~8.9 KB (RFC 6762
/// section 17), so larger lists are left out rather than break the record.
const MAX_ENDPOINTS_TXT: usize = 7_000;

/// Each TXT string is at most 255 bytes, key and `=` included.
const CHUNK: usize = 240;

/// A resolved instance as a one-node record and its TTL; `None` for an
/// instance that is not a micro node.
pub(super) fn parse(resolved: &mdns_sd::ResolvedService) -> Option<(Record, Duration)> {
    let props = resolved.get_properties();
    let get = |k: &str| props.get_property_val_str(k);
    let name = get("service")?.to_owned();
    let version = get("version").unwrap_or("latest").to_owned();
    let ttl = get("ttl")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(DEFAULT_TTL, Duration::from_millis);
    let id = resolved
        .fullname
        .strip_suffix(SERVICE_TYPE)
        .unwrap_or(&resolved.fullname)
        .trim_end_matches('.')
        .to_owned();
    let addresses: Vec<IpAddr> = resolved
        .get_addresses()
        .iter()
        .map(|a| a.to_ip_addr())
        .collect();
    let ip = addresses.iter().find(|a| a.is_ipv4()).or_else(|| {
        addresses
            .iter()
            .find(|a| matches!(a, IpAddr::V6(v6) if !v6.is_unicast_link_local()))
    })?;
    let mut node = Node::new(id, SocketAddr::new(*ip, resolved.get_port()).to_string());
    let mut record = Record::new(name).with_version(version);
    let mut chunks: BTreeMap<usize, &str> = BTreeMap::new();
    for prop in props.iter() {
        let (key, value) = (prop.key(), prop.val_str());
        if let Some(k) = key.strip_prefix("svc.") {
            record.metadata.insert(k.to_owned(), value.to_owned());
        } else if let Some(i) = key.strip_prefix("ep").and_then(|i| i.parse::<usize>().ok()) {
            chunks.insert(i, value);
        } else if !matches!(key, "service" | "version" | "ttl" | "seq" | "epn") {
            node.metadata.insert(key.to_owned(), value.to_owned());
        }
    }
    let expected = get("epn")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    if expected > 0 && chunks.len() == expected {
        let encoded: String = chunks.values().copied().collect();
        match decode_endpoints(&encoded) {
            Some(endpoints) => record.endpoints = endpoints,
            None => tracing::debug!(node = %node.id, "mdns: endpoint list does not decode"),
        }
    }
    record.nodes.push(node);
    Some((record, ttl))
}

/// The TXT properties of one node of `service`.
pub(super) fn properties(
    service: &Record,
    node: &Node,
    ttl: Duration,
    seq: u64,
) -> Vec<(String, String)> {
    let mut props = vec![
        ("service".to_owned(), service.name.clone()),
        ("version".to_owned(), service.version.clone()),
        ("ttl".to_owned(), ttl.as_millis().to_string()),
        ("seq".to_owned(), seq.to_string()),
    ];
    let fits = |k: &str, v: &str| {
        let ok = k.len() + v.len() < CHUNK;
        if !ok {
            tracing::warn!(
                key = k,
                "mdns: metadata entry too long for a TXT string; left out"
            );
        }
        ok
    };
    for (k, v) in &node.metadata {
        let reserved = matches!(k.as_str(), "service" | "version" | "ttl" | "seq" | "epn")
            || k.starts_with("svc.")
            || k.strip_prefix("ep")
                .is_some_and(|i| i.parse::<usize>().is_ok());
        if !reserved && fits(k, v) {
            props.push((k.clone(), v.clone()));
        }
    }
    for (k, v) in &service.metadata {
        let key = format!("svc.{k}");
        if fits(&key, v) {
            props.push((key, v.clone()));
        }
    }
    if !service.endpoints.is_empty() {
        let mut encoded = encode_endpoints(&service.endpoints);
        // Too big with the JSON Schemas: without them (the service serves
        // them at `GET /schemas`).
        if encoded.len() > MAX_ENDPOINTS_TXT
            && service
                .endpoints
                .iter()
                .any(|e| e.request_schema.is_some() || e.response_schema.is_some())
        {
            let bare: Vec<Endpoint> = service
                .endpoints
                .iter()
                .cloned()
                .map(|e| e.with_schemas(None, None))
                .collect();
            encoded = encode_endpoints(&bare);
        }
        if encoded.len() > MAX_ENDPOINTS_TXT {
            tracing::warn!(
                service = %service.name,
                bytes = encoded.len(),
                "mdns: endpoint list too large for a DNS record even compressed; left out"
            );
        } else {
            let chunks: Vec<&str> = encoded
                .as_bytes()
                .chunks(CHUNK)
                .map(|c| std::str::from_utf8(c).unwrap_or_default())
                .collect();
            props.push(("epn".to_owned(), chunks.len().to_string()));
            for (i, c) in chunks.iter().enumerate() {
                props.push((format!("ep{i}"), (*c).to_owned()));
            }
        }
    }
    props
}

/// The DNS-SD instance name of a node: its id, or, for an id longer than
/// a DNS label's 63 bytes, its start and a hash of the whole, so that long
/// service names still register.
pub(super) fn instance_name(id: &str) -> String {
    if id.len() <= 63 {
        return id.to_owned();
    }
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut hasher);
    let mut cut = 46;
    while !id.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{:016x}", &id[..cut], hasher.finish())
}

/// Endpoints as compressed JSON, base64url without padding.
fn encode_endpoints(endpoints: &[Endpoint]) -> String {
    let json = serde_json::to_vec(endpoints).unwrap_or_default();
    base64url(&miniz_oxide::deflate::compress_to_vec(&json, 9))
}

fn decode_endpoints(encoded: &str) -> Option<Vec<Endpoint>> {
    let compressed = unbase64url(encoded)?;
    let json = miniz_oxide::inflate::decompress_to_vec_with_limit(&compressed, 4 << 20).ok()?;
    serde_json::from_slice(&json).ok()
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

fn unbase64url(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Endpoint;

    #[test]
    fn long_ids_fit_a_dns_label() {
        let id = format!(
            "{}-{}",
            "a-rather-long-service-name-for-mdns",
            uuid::Uuid::new_v4()
        );
        let name = instance_name(&id);
        assert!(name.len() <= 63, "{name}");
        assert!(name.starts_with("a-rather-long-service-name-for-mdns-"));
        assert_eq!(instance_name(&id), name);
        assert_ne!(instance_name(&format!("{id}x")), name);
        assert_eq!(instance_name("greeter-1"), "greeter-1");
    }

    #[test]
    fn base64url_round_trips() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(unbase64url(&base64url(&bytes)).unwrap(), bytes);
        }
        assert_eq!(base64url(b"micro"), "bWljcm8");
        assert!(unbase64url("not base64!").is_none());
    }

    #[test]
    fn three_hundred_endpoints_fit_in_txt_strings() {
        let endpoints: Vec<Endpoint> = (0..300)
            .map(|i| Endpoint::new(format!("Big.Method{i:03}"), format!("Request{i}"), "Reply"))
            .collect();
        let service = Record {
            endpoints: endpoints.clone(),
            ..Record::new("big")
        };
        let node = Node::new("big-1", "10.0.0.1:80").with_metadata("protocol", "http");
        let props = properties(&service, &node, Duration::from_secs(90), 7);
        assert!(props.iter().all(|(k, v)| k.len() + v.len() < 255));
        let total: usize = props.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        assert!(total < MAX_ENDPOINTS_TXT + 500, "{total} bytes");
        let chunks: String = props
            .iter()
            .filter(|(k, _)| k.starts_with("ep") && k != "epn")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(decode_endpoints(&chunks).unwrap(), endpoints);
    }
}
