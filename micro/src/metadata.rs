//! Request metadata: string keys and values, matched case-insensitively.
//!
//! On the server, every request header except hop-by-hop and framing headers
//! becomes metadata in the handler's [`Context`](crate::Context). On the
//! client, metadata in the call's context or options goes out as headers.
//!
//! ```
//! use micro::metadata::Metadata;
//!
//! let mut md = Metadata::new();
//! md.insert("X-User", "alice");
//! assert_eq!(md.get("x-user"), Some("alice"));
//! assert_eq!(md.get("X-USER"), Some("alice"));
//! ```

use std::collections::BTreeMap;
use std::collections::btree_map;

use http::HeaderMap;

/// Case-insensitive string metadata. Keys are stored lowercased, as HTTP/2
/// sends them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    entries: BTreeMap<String, String>,
}

/// Headers that describe one hop or the framing of one message: they never
/// become metadata.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "content-length",
    "expect",
    "host",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers a client sets for itself on every call, so metadata carried from
/// an incoming request must not overwrite them on the way out.
const CALL_OWNED: &[&str] = &[
    "accept",
    "accept-encoding",
    "content-encoding",
    "content-type",
    "micro-endpoint",
    "micro-error",
    "micro-id",
    "micro-method",
    "micro-service",
    "micro-topic",
    "timeout",
    "user-agent",
    "x-micro-endpoint",
    "x-micro-error",
    "x-micro-id",
    "x-micro-method",
    "x-micro-service",
    "x-micro-topic",
];

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`, matched case-insensitively.
    pub fn get(&self, key: &str) -> Option<&str> {
        if key.bytes().any(|b| b.is_ascii_uppercase()) {
            self.entries
                .get(&key.to_ascii_lowercase())
                .map(String::as_str)
        } else {
            self.entries.get(key).map(String::as_str)
        }
    }

    /// Sets `key` to `value`, replacing any earlier value; returns the old
    /// one.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Option<String> {
        let mut key = key.into();
        key.make_ascii_lowercase();
        self.entries.insert(key, value.into())
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.entries.remove(&key.to_ascii_lowercase())
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, keys lowercased, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Copies every entry of `other` into `self`, `other` winning on
    /// conflicts.
    pub fn extend_from(&mut self, other: &Metadata) {
        for (k, v) in &other.entries {
            self.entries.insert(k.clone(), v.clone());
        }
    }

    /// The metadata of an incoming request: every header except hop-by-hop
    /// and framing headers. Values that are not UTF-8 are skipped; repeated
    /// headers are joined with `", "`.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut entries = BTreeMap::new();
        for (name, value) in headers {
            let name = name.as_str();
            if HOP_BY_HOP.contains(&name) {
                continue;
            }
            let Ok(value) = value.to_str() else { continue };
            match entries.entry(name.to_owned()) {
                btree_map::Entry::Vacant(e) => {
                    e.insert(value.to_owned());
                }
                btree_map::Entry::Occupied(mut e) => {
                    let joined: &mut String = e.get_mut();
                    joined.push_str(", ");
                    joined.push_str(value);
                }
            }
        }
        Self { entries }
    }

    /// Writes the entries as headers on an outgoing request, skipping the
    /// headers a call sets for itself and entries that are not valid
    /// header names or values.
    pub(crate) fn write_headers(&self, headers: &mut HeaderMap) {
        for (k, v) in &self.entries {
            if CALL_OWNED.contains(&k.as_str()) || HOP_BY_HOP.contains(&k.as_str()) {
                continue;
            }
            let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                http::HeaderValue::from_str(v),
            ) else {
                continue;
            };
            headers.insert(name, value);
        }
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut md = Metadata::new();
        for (k, v) in iter {
            md.insert(k, v);
        }
        md
    }
}

impl<K: Into<String>, V: Into<String>> Extend<(K, V)> for Metadata {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<'a> IntoIterator for &'a Metadata {
    type Item = (&'a String, &'a String);
    type IntoIter = btree_map::Iter<'a, String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_case_insensitive() {
        let mut md = Metadata::new();
        md.insert("X-Trace", "1");
        md.insert("x-trace", "2");
        assert_eq!(md.len(), 1);
        assert_eq!(md.get("X-TRACE"), Some("2"));
        assert_eq!(md.remove("X-Trace"), Some("2".into()));
        assert!(md.is_empty());
    }

    #[test]
    fn from_headers_drops_hop_by_hop_and_joins_repeats() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive".parse().unwrap());
        h.insert("content-length", "3".parse().unwrap());
        h.insert("host", "x".parse().unwrap());
        h.insert("x-user", "alice".parse().unwrap());
        h.append("x-tag", "a".parse().unwrap());
        h.append("x-tag", "b".parse().unwrap());
        let md = Metadata::from_headers(&h);
        assert_eq!(md.get("x-user"), Some("alice"));
        assert_eq!(md.get("x-tag"), Some("a, b"));
        assert!(!md.contains_key("connection"));
        assert!(!md.contains_key("content-length"));
        assert!(!md.contains_key("host"));
    }

    #[test]
    fn write_headers_skips_what_the_call_owns() {
        let md: Metadata = [
            ("Content-Type", "text/plain"),
            ("Micro-Endpoint", "A.B"),
            ("X-User", "bob"),
            ("bad header", "x"),
        ]
        .into_iter()
        .collect();
        let mut h = HeaderMap::new();
        md.write_headers(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-user"], "bob");
    }
}
