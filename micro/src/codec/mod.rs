//! Codecs: how bodies are encoded, chosen by content type.
//!
//! Two codecs are built in: JSON (`application/json`, the default) and
//! MessagePack (`application/msgpack`, also `application/x-msgpack`), whose
//! bodies are maps with field names so that other languages can decode them.
//! The server picks the request's codec from `Content-Type` (parameters such
//! as `; charset=utf-8` are ignored, a missing header means JSON) and the
//! reply's from `Accept`, falling back to the request's.
//!
//! ```
//! use micro::codec::ContentType;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, PartialEq, Debug)]
//! struct Hello { name: String }
//!
//! let ct = ContentType::from_header("application/msgpack; q=1").unwrap();
//! let bytes = ct.encode(&Hello { name: "alice".into() }).unwrap();
//! assert_eq!(ct.decode::<Hello>(&bytes).unwrap(), Hello { name: "alice".into() });
//! ```

mod json;
mod msgpack;

use std::fmt;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use json::JsonCodec;
pub use msgpack::MsgPackCodec;

/// Encodes values into bodies and decodes bodies into values.
///
/// A codec is generic over the value's type, so it is used statically (by
/// [`ContentType`]) rather than as a trait object. Encoding a value and
/// decoding the result gives the value back; decoding never panics on bad
/// input.
///
/// # Example
///
/// ```
/// use micro::codec::{Codec, JsonCodec};
///
/// let body = JsonCodec.encode(&vec![1, 2, 3]).unwrap();
/// assert_eq!(JsonCodec.decode::<Vec<u8>>(&body).unwrap(), [1, 2, 3]);
/// assert!(JsonCodec.decode::<Vec<u8>>(b"[1, 2").is_err());
/// ```
pub trait Codec: Clone + fmt::Debug + Send + Sync + 'static {
    /// The canonical content type, as sent in `Content-Type`.
    const CONTENT_TYPE: &'static str;

    /// Encodes `value`.
    ///
    /// # Errors
    /// [`CodecError::Encode`] if the value cannot be represented.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Bytes, CodecError>;

    /// Decodes `body` into a `T`.
    ///
    /// # Errors
    /// [`CodecError::Decode`] if `body` is not a valid `T`.
    fn decode<T: DeserializeOwned>(&self, body: &[u8]) -> Result<T, CodecError>;
}

/// A failure to encode or decode a body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The body is not a valid value of the expected type.
    #[error("decoding {content_type} body: {message}")]
    Decode {
        /// The codec's content type.
        content_type: &'static str,
        /// What the decoder said.
        message: String,
    },
    /// The value could not be encoded.
    #[error("encoding {content_type} body: {message}")]
    Encode {
        /// The codec's content type.
        content_type: &'static str,
        /// What the encoder said.
        message: String,
    },
    /// No codec handles this content type.
    #[error(
        "unsupported content type `{0}`, expected one of: application/json, application/msgpack"
    )]
    Unsupported(String),
}

impl CodecError {
    /// A decode error of the codec for `content_type`.
    pub fn decode(content_type: &'static str, err: impl fmt::Display) -> Self {
        CodecError::Decode {
            content_type,
            message: err.to_string(),
        }
    }

    /// An encode error of the codec for `content_type`.
    pub fn encode(content_type: &'static str, err: impl fmt::Display) -> Self {
        CodecError::Encode {
            content_type,
            message: err.to_string(),
        }
    }
}

/// The content types micro has codecs for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContentType {
    /// `application/json`.
    #[default]
    Json,
    /// `application/msgpack` (`application/x-msgpack` is accepted).
    MsgPack,
}

impl ContentType {
    /// The canonical header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            ContentType::Json => JsonCodec::CONTENT_TYPE,
            ContentType::MsgPack => MsgPackCodec::CONTENT_TYPE,
        }
    }

    /// The content type named by a `Content-Type` header value, ignoring
    /// parameters and case; `None` if micro has no codec for it.
    pub fn from_header(value: &str) -> Option<Self> {
        let essence = value.split(';').next().unwrap_or_default().trim();
        if essence.eq_ignore_ascii_case("application/json") {
            Some(ContentType::Json)
        } else if essence.eq_ignore_ascii_case("application/msgpack")
            || essence.eq_ignore_ascii_case("application/x-msgpack")
            || essence.eq_ignore_ascii_case("application/vnd.msgpack")
        {
            Some(ContentType::MsgPack)
        } else {
            None
        }
    }

    /// The codec for a request's `Content-Type`: JSON when the header is
    /// missing or empty.
    ///
    /// # Errors
    /// [`CodecError::Unsupported`] for a content type with no codec.
    pub fn for_request(header: Option<&str>) -> Result<Self, CodecError> {
        match header.map(str::trim) {
            None | Some("") => Ok(ContentType::Json),
            Some(v) => Self::from_header(v).ok_or_else(|| CodecError::Unsupported(v.to_owned())),
        }
    }

    /// The first supported type an `Accept` header lists, skipping entries
    /// with `q=0`; `None` when it lists none (or only wildcards), in which
    /// case the reply uses the request's codec.
    pub fn from_accept(value: &str) -> Option<Self> {
        value
            .split(',')
            .filter(|entry| {
                !entry.split(';').skip(1).any(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
                })
            })
            .find_map(Self::from_header)
    }

    /// Encodes `value` with this codec.
    ///
    /// # Errors
    /// [`CodecError::Encode`] if the value cannot be represented.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Bytes, CodecError> {
        match self {
            ContentType::Json => JsonCodec.encode(value),
            ContentType::MsgPack => MsgPackCodec.encode(value),
        }
    }

    /// Decodes `body` with this codec.
    ///
    /// # Errors
    /// [`CodecError::Decode`] if `body` is not a valid `T`.
    pub fn decode<T: DeserializeOwned>(self, body: &[u8]) -> Result<T, CodecError> {
        match self {
            ContentType::Json => JsonCodec.decode(body),
            ContentType::MsgPack => MsgPackCodec.decode(body),
        }
    }

    /// The header value, ready to send.
    pub(crate) fn header_value(self) -> http::HeaderValue {
        http::HeaderValue::from_static(self.as_str())
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ContentType {
    type Err = CodecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_header(s).ok_or_else(|| CodecError::Unsupported(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_parsing() {
        assert_eq!(
            ContentType::from_header("Application/JSON; charset=utf-8"),
            Some(ContentType::Json)
        );
        assert_eq!(
            ContentType::from_header("application/x-msgpack"),
            Some(ContentType::MsgPack)
        );
        assert_eq!(ContentType::from_header("text/plain"), None);
        assert_eq!(ContentType::for_request(None).unwrap(), ContentType::Json);
        assert_eq!(
            ContentType::for_request(Some("application/protobuf"))
                .unwrap_err()
                .to_string(),
            "unsupported content type `application/protobuf`, expected one of: application/json, application/msgpack"
        );
    }

    #[test]
    fn accept_parsing() {
        assert_eq!(ContentType::from_accept("*/*"), None);
        assert_eq!(
            ContentType::from_accept("text/html, application/msgpack;q=0.9, application/json"),
            Some(ContentType::MsgPack)
        );
        assert_eq!(
            ContentType::from_accept("application/msgpack;q=0, application/json"),
            Some(ContentType::Json)
        );
    }
}
