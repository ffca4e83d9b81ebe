//! A connection to an etcd cluster over its v3 JSON API (the gRPC gateway
//! every etcd 3.4+ serves on its client port), on the crate's one HTTP
//! client: no gRPC stack, no protobuf compiler.
//!
//! Keys and values travel base64-encoded and 64-bit integers as strings,
//! as the gateway's JSON mapping says. A call goes to the endpoint that
//! answered last; one that cannot be reached passes the call to the next.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::Stream;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// How long a unary call may take before the endpoint counts as down.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest reply a unary call reads: 64 MiB (a range of many keys).
const MAX_REPLY: usize = 64 * 1024 * 1024;

/// The client URLs of one etcd cluster, and the HTTP client that reaches
/// them. Shared by the parts of a bundle given the same address.
pub(crate) struct EtcdConnection {
    endpoints: Vec<String>,
    /// The endpoint that answered last.
    current: AtomicUsize,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

impl fmt::Debug for EtcdConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConnection")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

/// One key and its value, as etcd holds them.
#[derive(Clone, Debug)]
pub(crate) struct KeyValue {
    pub(crate) key: String,
    pub(crate) value: Vec<u8>,
}

/// One key's value and the revision of its last write.
#[derive(Clone, Debug)]
pub(crate) struct Versioned {
    pub(crate) value: Vec<u8>,
    pub(crate) revision: i64,
}

/// What a conditional write expects of its key.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Expect {
    /// That it does not exist.
    Absent,
    /// That its last write was at this revision.
    Revision(i64),
}

/// One change a watch reports.
#[derive(Clone, Debug)]
pub(crate) enum Change {
    Put(KeyValue),
    Delete(String),
}

impl EtcdConnection {
    /// A connection to the cluster at `address`: one client URL or several,
    /// comma-separated (`http://10.0.0.1:2379,http://10.0.0.2:2379`); a URL
    /// without a scheme is `http://`.
    pub(crate) fn new(address: &str) -> Arc<Self> {
        let endpoints = address
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| {
                let a = a.trim_end_matches('/');
                if a.contains("://") {
                    a.to_owned()
                } else {
                    format!("http://{a}")
                }
            })
            .collect();
        Arc::new(Self {
            endpoints,
            current: AtomicUsize::new(0),
            http: crate::transport::hyper_client(),
        })
    }

    fn request(&self, endpoint: &str, path: &str, body: &Value) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(Bytes::from(body.to_string())));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = format!("{endpoint}{path}")
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static("http://invalid"));
        request.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        request
    }

    /// POSTs `body` to `path` (`/v3/kv/put`, …) and returns the reply's
    /// JSON, trying each endpoint once, starting with the last good one.
    ///
    /// # Errors
    /// The error etcd answered with, or why no endpoint could be reached.
    pub(crate) async fn call(&self, path: &str, body: &Value) -> Result<Value, String> {
        if self.endpoints.is_empty() {
            return Err("etcd: no endpoint given".to_owned());
        }
        let start = self.current.load(Ordering::Relaxed);
        let mut last = String::new();
        for i in 0..self.endpoints.len() {
            let at = (start + i) % self.endpoints.len();
            let endpoint = &self.endpoints[at];
            let sent = self.http.request(self.request(endpoint, path, body));
            let reply = match tokio::time::timeout(CALL_TIMEOUT, async {
                let response = sent.await.map_err(|e| crate::transport::chain(&e))?;
                let (parts, body) = response.into_parts();
                let bytes = http_body_util::Limited::new(body, MAX_REPLY)
                    .collect()
                    .await
                    .map_err(|e| crate::transport::chain(&*e))?
                    .to_bytes();
                Ok::<_, String>((parts.status, bytes))
            })
            .await
            {
                Ok(Ok(reply)) => reply,
                Ok(Err(e)) => {
                    last = format!("etcd at {endpoint}: {e}");
                    continue;
                }
                Err(_) => {
                    last = format!("etcd at {endpoint}: no reply in {CALL_TIMEOUT:?}");
                    continue;
                }
            };
            self.current.store(at, Ordering::Relaxed);
            let (status, bytes) = reply;
            let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "etcd at {endpoint} answered {status} with what is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                )
            })?;
            if !status.is_success() {
                return Err(format!("etcd at {endpoint}: {status}: {}", message(&value)));
            }
            return Ok(value);
        }
        Err(last)
    }

    /// Every key under `prefix` with its value, and the revision the read
    /// saw.
    ///
    /// # Errors
    /// As for [`call`](Self::call).
    pub(crate) async fn range(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), String> {
        let reply = self
            .call(
                "/v3/kv/range",
                &json!({ "key": b64(prefix), "range_end": b64(range_end(prefix)) }),
            )
            .await?;
        let revision = int(&reply["header"]["revision"]);
        let kvs = reply["kvs"]
            .as_array()
            .map(|kvs| kvs.iter().filter_map(key_value).collect())
            .unwrap_or_default();
        Ok((kvs, revision))
    }

    /// `key`'s value and the revision of its last write, if it exists.
    ///
    /// # Errors
    /// As for [`call`](Self::call).
    pub(crate) async fn get(&self, key: &str) -> Result<Option<Versioned>, String> {
        let reply = self
            .call("/v3/kv/range", &json!({ "key": b64(key) }))
            .await?;
        Ok(reply["kvs"]
            .as_array()
            .and_then(|kvs| kvs.first())
            .map(|kv| Versioned {
                value: kv["value"]
                    .as_str()
                    .and_then(|v| BASE64.decode(v).ok())
                    .unwrap_or_default(),
                revision: int(&kv["mod_revision"]),
            }))
    }

    /// Writes `value` to `key` if the key is as `expect` says, in one
    /// transaction: the revision of the write, or `None` when the key was
    /// not as expected.
    ///
    /// # Errors
    /// As for [`call`](Self::call).
    pub(crate) async fn put_if(
        &self,
        key: &str,
        value: &[u8],
        expect: Expect,
    ) -> Result<Option<i64>, String> {
        let write = json!({ "request_put": { "key": b64(key), "value": BASE64.encode(value) } });
        self.txn(key, expect, write).await
    }

    /// Deletes `key` if its last write was at `revision`; whether it did.
    ///
    /// # Errors
    /// As for [`call`](Self::call).
    pub(crate) async fn delete_if(&self, key: &str, revision: i64) -> Result<bool, String> {
        let delete = json!({ "request_delete_range": { "key": b64(key) } });
        Ok(self
            .txn(key, Expect::Revision(revision), delete)
            .await?
            .is_some())
    }

    /// `op` if `key` is as `expect` says: the revision after it, or `None`.
    async fn txn(&self, key: &str, expect: Expect, op: Value) -> Result<Option<i64>, String> {
        let compare = match expect {
            Expect::Absent => json!({
                "key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0",
            }),
            Expect::Revision(revision) => json!({
                "key": b64(key), "target": "MOD", "result": "EQUAL",
                "mod_revision": revision.to_string(),
            }),
        };
        let reply = self
            .call(
                "/v3/kv/txn",
                &json!({ "compare": [compare], "success": [op] }),
            )
            .await?;
        // proto3's JSON leaves `false` out.
        Ok((reply["succeeded"].as_bool() == Some(true)).then(|| int(&reply["header"]["revision"])))
    }

    /// Writes `key`, attached to `lease` (0 for none).
    ///
    /// # Errors
    /// As for [`call`](Self::call); a lease etcd no longer has is
    /// `requested lease not found`.
    pub(crate) async fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<(), String> {
        let mut body = json!({ "key": b64(key), "value": BASE64.encode(value) });
        if lease != 0 {
            body["lease"] = json!(lease.to_string());
        }
        self.call("/v3/kv/put", &body).await.map(drop)
    }

    /// Deletes `key`.
    ///
    /// # Errors
    /// As for [`call`](Self::call).
    pub(crate) async fn delete(&self, key: &str) -> Result<(), String> {
        self.call("/v3/kv/deleterange", &json!({ "key": b64(key) }))
            .await
            .map(drop)
    }

    /// A new lease of `ttl` whole seconds; its id and the TTL granted
    /// (etcd raises one below its minimum).
    ///
    /// # Errors
    /// As for [`call`](Self::call).
    pub(crate) async fn grant(&self, ttl: u64) -> Result<(i64, u64), String> {
        let reply = self.call("/v3/lease/grant", &json!({ "TTL": ttl })).await?;
        match int(&reply["ID"]) {
            0 => Err(format!("etcd granted no lease: {}", message(&reply))),
            id => Ok((id, u64::try_from(int(&reply["TTL"])).unwrap_or(0).max(ttl))),
        }
    }

    /// Renews `lease`; `false` when etcd no longer has it (it expired).
    ///
    /// # Errors
    /// As for [`call`](Self::call).
    pub(crate) async fn keep_alive(&self, lease: i64) -> Result<bool, String> {
        let reply = self
            .call("/v3/lease/keepalive", &json!({ "ID": lease.to_string() }))
            .await?;
        Ok(int(&reply["result"]["TTL"]) > 0)
    }

    /// Ends `lease`, deleting the keys attached to it.
    ///
    /// # Errors
    /// As for [`call`](Self::call).
    pub(crate) async fn revoke(&self, lease: i64) -> Result<(), String> {
        self.call("/v3/lease/revoke", &json!({ "ID": lease.to_string() }))
            .await
            .map(drop)
    }

    /// The changes under `prefix` from revision `from` on, as etcd reports
    /// them. The stream ends with an error when the watch breaks (the
    /// endpoint went away, or `from` was compacted).
    ///
    /// # Errors
    /// Why the watch could not be opened.
    pub(crate) async fn watch(
        &self,
        prefix: &str,
        from: i64,
    ) -> Result<impl Stream<Item = Result<Vec<Change>, String>> + Send + 'static, String> {
        let body = json!({ "create_request": {
            "key": b64(prefix),
            "range_end": b64(range_end(prefix)),
            "start_revision": from.to_string(),
        }});
        let start = self.current.load(Ordering::Relaxed) % self.endpoints.len().max(1);
        let mut last = "etcd: no endpoint given".to_owned();
        for i in 0..self.endpoints.len() {
            let at = (start + i) % self.endpoints.len();
            let endpoint = self.endpoints[at].clone();
            let sent = self
                .http
                .request(self.request(&endpoint, "/v3/watch", &body));
            match tokio::time::timeout(CALL_TIMEOUT, sent).await {
                Ok(Ok(response)) if response.status().is_success() => {
                    self.current.store(at, Ordering::Relaxed);
                    return Ok(changes(endpoint, response.into_body()));
                }
                Ok(Ok(response)) => last = format!("etcd at {endpoint}: {}", response.status()),
                Ok(Err(e)) => last = format!("etcd at {endpoint}: {}", crate::transport::chain(&e)),
                Err(_) => last = format!("etcd at {endpoint}: no reply in {CALL_TIMEOUT:?}"),
            }
        }
        Err(last)
    }
}

/// The watch's messages, one JSON object per line, as changes.
fn changes(
    endpoint: String,
    body: hyper::body::Incoming,
) -> impl Stream<Item = Result<Vec<Change>, String>> + Send + 'static {
    struct Reading {
        endpoint: String,
        body: Option<hyper::body::Incoming>,
        buffer: BytesMut,
    }
    let state = Reading {
        endpoint,
        body: Some(body),
        buffer: BytesMut::new(),
    };
    futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(end) = s.buffer.iter().position(|&b| b == b'\n') {
                let line = s.buffer.split_to(end + 1);
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                match message_changes(line) {
                    Ok(None) => continue,
                    Ok(Some(changes)) => return Some((Ok(changes), s)),
                    Err(e) => {
                        s.body = None;
                        return Some((Err(format!("etcd watch at {}: {e}", s.endpoint)), s));
                    }
                }
            }
            let body = s.body.as_mut()?;
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            s.buffer.extend_from_slice(chunk);
                            let n = chunk.len();
                            data.advance(n);
                        }
                    }
                }
                Some(Err(e)) => {
                    s.body = None;
                    let e = crate::transport::chain(&e);
                    return Some((Err(format!("etcd watch at {}: {e}", s.endpoint)), s));
                }
                None => {
                    s.body = None;
                    let e = format!("etcd watch at {}: the stream ended", s.endpoint);
                    return Some((Err(e), s));
                }
            }
        }
    })
}

/// The changes one watch message carries; `None` for one with none (the
/// confirmation that the watch was made, a progress report).
fn message_changes(line: &[u8]) -> Result<Option<Vec<Change>>, String> {
    let value: Value = serde_json::from_slice(line).map_err(|e| format!("bad message: {e}"))?;
    if value.get("error").is_some() {
        return Err(message(&value["error"]));
    }
    let result = &value["result"];
    if result["canceled"].as_bool() == Some(true) {
        let reason = result["cancel_reason"]
            .as_str()
            .unwrap_or("no reason given");
        if int(&result["compact_revision"]) > 0 {
            return Err(format!("the revision was compacted: {reason}"));
        }
        return Err(format!("etcd cancelled the watch: {reason}"));
    }
    let Some(events) = result["events"].as_array() else {
        return Ok(None);
    };
    let changes = events
        .iter()
        .filter_map(|e| {
            let kv = key_value(&e["kv"])?;
            // A put is the enum's zero, which the JSON leaves out.
            Some(match e["type"].as_str() {
                Some("DELETE") => Change::Delete(kv.key),
                _ => Change::Put(kv),
            })
        })
        .collect();
    Ok(Some(changes))
}

/// etcd's error text from an error reply (`{"error": .., "message": ..}`).
fn message(value: &Value) -> String {
    value["message"]
        .as_str()
        .or_else(|| value["error"].as_str())
        .or_else(|| value.as_str())
        .map_or_else(|| value.to_string(), str::to_owned)
}

/// A key (with its value, if any) from the gateway's JSON.
fn key_value(kv: &Value) -> Option<KeyValue> {
    let key = BASE64.decode(kv["key"].as_str()?).ok()?;
    let value = kv["value"]
        .as_str()
        .and_then(|v| BASE64.decode(v).ok())
        .unwrap_or_default();
    Some(KeyValue {
        key: String::from_utf8(key).ok()?,
        value,
    })
}

/// A 64-bit integer, which the gateway writes as a string.
fn int(value: &Value) -> i64 {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| value.as_i64())
        .unwrap_or(0)
}

fn b64(text: impl AsRef<[u8]>) -> String {
    BASE64.encode(text)
}

/// The end of the range of keys that start with `prefix`: the prefix with
/// its last byte raised by one.
fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every key: etcd reads "\0" as "to the end".
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_of_a_prefix_ends_past_it() {
        assert_eq!(range_end("/micro/"), b"/micro0");
        assert_eq!(range_end(""), [0]);
    }

    #[test]
    fn watch_messages_become_changes() {
        let created = br#"{"result":{"header":{"revision":"7"},"created":true}}"#;
        assert!(message_changes(created).unwrap().is_none());
        let put = format!(
            r#"{{"result":{{"events":[{{"kv":{{"key":"{}","value":"{}"}}}},{{"type":"DELETE","kv":{{"key":"{}"}}}}]}}}}"#,
            b64("a"),
            b64("1"),
            b64("b")
        );
        let changes = message_changes(put.as_bytes()).unwrap().unwrap();
        assert!(matches!(&changes[0], Change::Put(kv) if kv.key == "a" && kv.value == b"1"));
        assert!(matches!(&changes[1], Change::Delete(k) if k == "b"));
        let compacted = br#"{"result":{"canceled":true,"compact_revision":"3"}}"#;
        assert!(
            message_changes(compacted)
                .unwrap_err()
                .contains("compacted")
        );
    }
}
