//! The one error type that crosses the wire.
//!
//! Every failure a caller can see, from a bad request body to a dead node, is
//! an [`Error`]: a status `code` (HTTP semantics), the `id` of the service
//! that produced it, and a human `detail`. On the wire it is the JSON of
//! docs/wire.md:
//!
//! ```json
//! {"id":"helloworld","code":404,"detail":"endpoint Helloworld.Nope not found","status":"Not Found"}
//! ```
//!
//! A handler returns its own errors with the constructor for the code it
//! means, and they reach the caller with that code:
//!
//! ```
//! use micro::Error;
//!
//! let err = Error::bad_request("name must not be empty");
//! assert_eq!(err.code(), 400);
//! assert_eq!(err.status(), "Bad Request");
//! assert_eq!(err.to_string(), "400 Bad Request: name must not be empty");
//! ```

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A `Result` whose error is [`micro::Error`](Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error that crosses the wire: a code, the id of the service that
/// raised it, and a detail.
///
/// The source, when there is one, stays in the process: it is never
/// serialised, but [`std::error::Error::source`] returns it for logs.
#[derive(Clone)]
pub struct Error {
    id: Cow<'static, str>,
    code: u16,
    detail: Cow<'static, str>,
    source: Option<Arc<dyn StdError + Send + Sync + 'static>>,
}

/// The JSON form, with the fields in docs/wire.md's order.
#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    #[serde(default, borrow)]
    id: Cow<'a, str>,
    #[serde(default)]
    code: u16,
    #[serde(default, borrow)]
    detail: Cow<'a, str>,
    #[serde(default, borrow)]
    status: Cow<'a, str>,
}

/// The codes micro's own errors use, by name (an [`Error`]'s code is any
/// `u16`; a handler may choose others).
pub mod code {
    /// 400: the request is malformed or does not decode.
    pub const BAD_REQUEST: u16 = 400;
    /// 401: no credentials, or credentials that are not valid.
    pub const UNAUTHORIZED: u16 = 401;
    /// 403: the caller is known but not allowed.
    pub const FORBIDDEN: u16 = 403;
    /// 404: no such endpoint, record or resource.
    pub const NOT_FOUND: u16 = 404;
    /// 405: the HTTP method is not supported here.
    pub const METHOD_NOT_ALLOWED: u16 = 405;
    /// 408: the deadline passed.
    pub const TIMEOUT: u16 = 408;
    /// 409: the request conflicts with the current state.
    pub const CONFLICT: u16 = 409;
    /// 413: the body is larger than the server accepts.
    pub const PAYLOAD_TOO_LARGE: u16 = 413;
    /// 415: the content type has no codec.
    pub const UNSUPPORTED_MEDIA_TYPE: u16 = 415;
    /// 426: `GET /` without a WebSocket upgrade.
    pub const UPGRADE_REQUIRED: u16 = 426;
    /// 429: the caller sent more than it may; try again later.
    pub const TOO_MANY_REQUESTS: u16 = 429;
    /// 500: the handler failed without saying why, or panicked.
    pub const INTERNAL: u16 = 500;
    /// 501: not implemented, or a transfer coding the server does not take.
    pub const NOT_IMPLEMENTED: u16 = 501;
    /// 502: an upstream answered with something that is not a reply.
    pub const BAD_GATEWAY: u16 = 502;
    /// 503: no node could take the request.
    pub const UNAVAILABLE: u16 = 503;
    /// 504: an upstream did not answer in time.
    pub const GATEWAY_TIMEOUT: u16 = 504;
}

macro_rules! constructors {
    ($($(#[$doc:meta])* $name:ident => $code:expr;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(detail: impl Into<Cow<'static, str>>) -> Self {
                Self::new("", $code, detail)
            }
        )*
    };
}

impl Error {
    /// An error with the given service id, code and detail.
    ///
    /// A code outside 400–599 is kept as given; the HTTP reply then uses 500.
    pub fn new(
        id: impl Into<Cow<'static, str>>,
        code: u16,
        detail: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            id: id.into(),
            code,
            detail: detail.into(),
            source: None,
        }
    }

    constructors! {
        /// 400: the request is malformed or does not decode.
        bad_request => code::BAD_REQUEST;
        /// 401: no credentials, or credentials that are not valid.
        unauthorized => code::UNAUTHORIZED;
        /// 403: the caller is known but not allowed.
        forbidden => code::FORBIDDEN;
        /// 404: no such endpoint, record or resource.
        not_found => code::NOT_FOUND;
        /// 405: the HTTP method is not supported here.
        method_not_allowed => code::METHOD_NOT_ALLOWED;
        /// 408: the deadline passed.
        timeout => code::TIMEOUT;
        /// 409: the request conflicts with the current state.
        conflict => code::CONFLICT;
        /// 413: the body is larger than the server accepts.
        payload_too_large => code::PAYLOAD_TOO_LARGE;
        /// 415: the content type has no codec.
        unsupported_media_type => code::UNSUPPORTED_MEDIA_TYPE;
        /// 429: the caller sent more than it may; try again later.
        too_many_requests => code::TOO_MANY_REQUESTS;
        /// 500: the handler failed without saying why, or panicked.
        internal => code::INTERNAL;
        /// 501: the endpoint exists but is not implemented.
        not_implemented => code::NOT_IMPLEMENTED;
        /// 502: an upstream answered with something that is not a reply.
        bad_gateway => code::BAD_GATEWAY;
        /// 503: no node could take the request.
        unavailable => code::UNAVAILABLE;
        /// 504: an upstream did not answer in time.
        gateway_timeout => code::GATEWAY_TIMEOUT;
    }

    /// Whether the request failed before a handler could have run it, on
    /// a node another node could stand in for: 502, 503 or 504. Failover
    /// retries these on another node; every other code is the answer.
    pub fn is_node_failure(&self) -> bool {
        matches!(
            self.code,
            code::BAD_GATEWAY | code::UNAVAILABLE | code::GATEWAY_TIMEOUT
        )
    }

    /// Sets the id of the service that raised the error.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<Cow<'static, str>>) -> Self {
        self.id = id.into();
        self
    }

    /// Attaches the underlying cause. It is kept for logs and
    /// [`source`](StdError::source) and never sent over the wire.
    #[must_use]
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The id of the service that raised the error (may be empty).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The status code, with HTTP semantics.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The human-readable detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The reason phrase of [`code`](Self::code), as in the `status` field.
    pub fn status(&self) -> &'static str {
        reason_phrase(self.code)
    }

    /// The HTTP status the error is sent with: `code` when it is 400–599,
    /// else 500.
    pub fn http_status(&self) -> http::StatusCode {
        match self.code {
            400..=599 => http::StatusCode::from_u16(self.code)
                .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR),
            _ => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Fills in the service id if the error does not name one yet.
    pub(crate) fn or_id(mut self, id: &str) -> Self {
        if self.id.is_empty() {
            self.id = Cow::Owned(id.to_owned());
        }
        self
    }

    /// The error's JSON, as it goes in the body and the `Micro-Error` header.
    pub fn to_json(&self) -> String {
        let wire = Wire {
            id: Cow::Borrowed(&self.id),
            code: self.code,
            detail: Cow::Borrowed(&self.detail),
            status: Cow::Borrowed(self.status()),
        };
        // Serialising four plain fields cannot fail.
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// Parses the error JSON. Returns `None` if `bytes` is not an error
    /// object with a non-zero code.
    pub fn from_json(bytes: &[u8]) -> Option<Self> {
        let wire: Wire<'_> = serde_json::from_slice(bytes).ok()?;
        (wire.code != 0)
            .then(|| Self::new(wire.id.into_owned(), wire.code, wire.detail.into_owned()))
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("id", &self.id)
            .field("code", &self.code)
            .field("detail", &self.detail);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.code, self.status(), self.detail)
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}

impl PartialEq for Error {
    /// Two errors are equal when their id, code and detail are; the source
    /// is not compared.
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.code == other.code && self.detail == other.detail
    }
}

impl Eq for Error {}

impl Serialize for Error {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Wire {
            id: Cow::Borrowed(&self.id),
            code: self.code,
            detail: Cow::Borrowed(&self.detail),
            status: Cow::Borrowed(self.status()),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Error {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        Ok(Self::new(
            wire.id.into_owned(),
            wire.code,
            wire.detail.into_owned(),
        ))
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Self::internal(err.to_string()).with_source(err)
    }
}

impl From<crate::codec::CodecError> for Error {
    /// 415 for a content type that has no codec, or none for the type;
    /// 400 for a body that does not decode (or a value that does not
    /// encode).
    fn from(err: crate::codec::CodecError) -> Self {
        use crate::codec::CodecError;
        match err {
            CodecError::Unsupported(_) | CodecError::Unavailable { .. } => {
                Self::unsupported_media_type(err.to_string()).with_source(err)
            }
            _ => Self::bad_request(err.to_string()).with_source(err),
        }
    }
}

/// The reason phrase of a status code, `"Unknown"` for codes without one.
pub(crate) fn reason_phrase(code: u16) -> &'static str {
    http::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_failures_are_the_codes_failover_retries() {
        for c in [code::BAD_GATEWAY, code::UNAVAILABLE, code::GATEWAY_TIMEOUT] {
            assert!(Error::new("", c, "").is_node_failure(), "{c}");
        }
        for c in [
            code::BAD_REQUEST,
            code::TIMEOUT,
            code::PAYLOAD_TOO_LARGE,
            code::INTERNAL,
        ] {
            assert!(!Error::new("", c, "").is_node_failure(), "{c}");
        }
        assert_eq!(Error::payload_too_large("x").code(), 413);
        assert_eq!(Error::unavailable("x").code(), code::UNAVAILABLE);
    }

    #[test]
    fn json_has_wire_field_order_and_status() {
        let err = Error::not_found("endpoint Helloworld.Nope not found").with_id("helloworld");
        assert_eq!(
            err.to_json(),
            r#"{"id":"helloworld","code":404,"detail":"endpoint Helloworld.Nope not found","status":"Not Found"}"#
        );
    }

    #[test]
    fn json_round_trips() {
        let err = Error::new("svc", 418, "short and stout");
        let back = Error::from_json(err.to_json().as_bytes()).unwrap();
        assert_eq!(back, err);
        assert_eq!(back.status(), "I'm a teapot");
    }

    #[test]
    fn from_json_rejects_non_errors() {
        assert!(Error::from_json(br#"{"message":"hi"}"#).is_none());
        assert!(Error::from_json(b"not json").is_none());
    }

    #[test]
    fn http_status_falls_back_to_500() {
        assert_eq!(Error::new("", 42, "odd").http_status(), 500);
        assert_eq!(Error::new("", 42, "odd").status(), "Unknown");
        assert_eq!(Error::unavailable("x").http_status(), 503);
    }

    #[test]
    fn display_and_source() {
        let io = std::io::Error::other("disk on fire");
        let err = Error::internal("write failed").with_source(io);
        assert_eq!(err.to_string(), "500 Internal Server Error: write failed");
        assert_eq!(err.source().unwrap().to_string(), "disk on fire");
        assert!(!err.to_json().contains("disk on fire"));
    }

    #[test]
    fn or_id_keeps_an_existing_id() {
        assert_eq!(Error::internal("x").or_id("a").id(), "a");
        assert_eq!(Error::internal("x").with_id("b").or_id("a").id(), "b");
    }
}
