//! Request metadata: string keys and values, matched case-insensitively.
//!
//! On the server, every request header except hop-by-hop and framing headers
//! becomes metadata in the handler's [`Context`](crate::Context). On the
//! client, metadata in the call's context or options goes out as headers.
//!
//! Metadata is backed by the request's own header map, moved rather than
//! copied, so a server pays nothing for headers its handler never reads.
//!
//! ```
//! use micro::metadata::Metadata;
//!
//! let mut md = Metadata::new();
//! md.insert("X-User", "alice");
//! assert_eq!(md.get("x-user"), Some("alice"));
//! assert_eq!(md.get("X-USER"), Some("alice"));
//! ```

use std::fmt;

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

/// Case-insensitive string metadata. Keys are header names (stored
/// lowercased, as HTTP/2 sends them); values are header values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    headers: HeaderMap,
}

/// A key or value that cannot travel as an HTTP header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid metadata {what} {text:?}: not a valid HTTP header {what}")]
pub struct InvalidMetadata {
    what: &'static str,
    text: String,
}

/// Headers that describe one hop or the framing of one message: they never
/// become metadata.
static HOP_BY_HOP: [HeaderName; 12] = [
    http::header::CONNECTION,
    http::header::CONTENT_LENGTH,
    http::header::EXPECT,
    http::header::HOST,
    HeaderName::from_static("keep-alive"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
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
    "traceparent",
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

    /// The value of `key`, matched case-insensitively; the first one if
    /// the header was repeated. `None` if absent or not UTF-8.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.headers.get(key).and_then(|v| v.to_str().ok())
    }

    /// Every value of `key`, for headers sent more than once.
    pub fn get_all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.headers
            .get_all(key)
            .into_iter()
            .filter_map(|v| v.to_str().ok())
    }

    /// Sets `key` to `value`, replacing earlier values; returns the old one.
    ///
    /// Metadata travels as HTTP headers, so a key must be a valid header
    /// name and a value a valid header value. An entry that is not is left
    /// out with a warning; use [`try_insert`](Self::try_insert) to handle
    /// that case.
    pub fn insert(&mut self, key: impl AsRef<str>, value: impl AsRef<str>) -> Option<String> {
        match self.try_insert(key, value) {
            Ok(old) => old,
            Err(e) => {
                tracing::warn!(error = %e, "metadata entry left out");
                None
            }
        }
    }

    /// Sets `key` to `value`, replacing earlier values; returns the old one.
    ///
    /// # Errors
    /// [`InvalidMetadata`] if the key is not a valid header name or the
    /// value not a valid header value.
    pub fn try_insert(
        &mut self,
        key: impl AsRef<str>,
        value: impl AsRef<str>,
    ) -> Result<Option<String>, InvalidMetadata> {
        let (key, value) = (key.as_ref(), value.as_ref());
        let name = HeaderName::from_bytes(key.as_bytes()).map_err(|_| InvalidMetadata {
            what: "key",
            text: key.to_owned(),
        })?;
        let value = HeaderValue::from_str(value).map_err(|_| InvalidMetadata {
            what: "value",
            text: value.to_owned(),
        })?;
        Ok(self
            .headers
            .insert(name, value)
            .and_then(|old| old.to_str().ok().map(str::to_owned)))
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.headers
            .remove(key)
            .and_then(|v| v.to_str().ok().map(str::to_owned))
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.headers.contains_key(key)
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.headers.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    /// The entries, keys lowercased; a repeated header yields one entry per
    /// value. Values that are not UTF-8 are skipped.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
    }

    /// Copies every entry of `other` into `self`, `other` winning on
    /// conflicts.
    pub fn extend_from(&mut self, other: &Metadata) {
        let mut last = None;
        for (name, value) in &other.headers {
            if last.as_ref() != Some(name) {
                self.headers.insert(name.clone(), value.clone());
                last = Some(name.clone());
            } else {
                self.headers.append(name.clone(), value.clone());
            }
        }
    }

    /// The metadata of an incoming request: its headers, less hop-by-hop
    /// and framing headers.
    pub fn from_headers(mut headers: HeaderMap) -> Self {
        for name in &HOP_BY_HOP {
            if headers.contains_key(name) {
                headers.remove(name);
            }
        }
        Self { headers }
    }

    /// The underlying headers.
    pub fn as_headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Writes the entries as headers on an outgoing request, skipping the
    /// headers a call sets for itself.
    pub(crate) fn write_headers(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.headers {
            if CALL_OWNED.contains(&name.as_str()) || HOP_BY_HOP.contains(name) {
                continue;
            }
            headers.append(name.clone(), value.clone());
        }
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut md = Metadata::new();
        md.extend(iter);
        md
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Extend<(K, V)> for Metadata {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_case_insensitive() {
        let mut md = Metadata::new();
        md.insert("X-Trace", "1");
        assert_eq!(md.insert("x-trace", "2"), Some("1".into()));
        assert_eq!(md.len(), 1);
        assert_eq!(md.get("X-TRACE"), Some("2"));
        assert_eq!(md.remove("X-Trace"), Some("2".into()));
        assert!(md.is_empty());
    }

    #[test]
    fn invalid_entries_are_refused() {
        let mut md = Metadata::new();
        assert_eq!(
            md.try_insert("bad key", "v").unwrap_err().to_string(),
            "invalid metadata key \"bad key\": not a valid HTTP header key"
        );
        assert!(md.try_insert("k", "line\nbreak").is_err());
        md.insert("bad key", "v");
        assert!(md.is_empty());
    }

    #[test]
    fn from_headers_drops_hop_by_hop_and_keeps_repeats() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive".parse().unwrap());
        h.insert("content-length", "3".parse().unwrap());
        h.insert("host", "x".parse().unwrap());
        h.insert("x-user", "alice".parse().unwrap());
        h.append("x-tag", "a".parse().unwrap());
        h.append("x-tag", "b".parse().unwrap());
        let md = Metadata::from_headers(h);
        assert_eq!(md.get("x-user"), Some("alice"));
        assert_eq!(md.get("x-tag"), Some("a"));
        assert_eq!(md.get_all("x-tag").collect::<Vec<_>>(), ["a", "b"]);
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
        ]
        .into_iter()
        .collect();
        let mut h = HeaderMap::new();
        md.write_headers(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-user"], "bob");
    }

    #[test]
    fn extend_from_overrides_and_keeps_repeats() {
        let mut a: Metadata = [("x-a", "1"), ("x-b", "1")].into_iter().collect();
        let mut h = HeaderMap::new();
        h.append("x-b", "2".parse().unwrap());
        h.append("x-b", "3".parse().unwrap());
        a.extend_from(&Metadata::from_headers(h));
        assert_eq!(a.get("x-a"), Some("1"));
        assert_eq!(a.get_all("x-b").collect::<Vec<_>>(), ["2", "3"]);
    }
}
