//! Codecs: how bodies are encoded, chosen by content type.
//!
//! Two codecs are built in: JSON (`application/json`, the default) and
//! MessagePack (`application/msgpack`, also `application/x-msgpack`), whose
//! bodies are maps with field names so that other languages can decode them.
//! With the `protobuf` feature, a third: protobuf (`application/protobuf`,
//! also `application/x-protobuf`), for the message types of a
//! `#[service(protobuf)]`, which implement `prost::Message`; see
//! [`ProtobufCodec`].
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
#[cfg(feature = "protobuf")]
#[doc(hidden)]
pub mod probe;
#[cfg(feature = "protobuf")]
mod protobuf;

use std::fmt;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use json::JsonCodec;
pub use msgpack::MsgPackCodec;
#[cfg(feature = "protobuf")]
pub use protobuf::ProtobufCodec;

/// The endpoint metadata key that names an endpoint's protobuf service
/// (`<package>.<Service>`), set by `#[service(protobuf)]`.
pub const PROTOBUF_METADATA: &str = "protobuf";

/// The endpoint metadata key that gives the gRPC path
/// (`/<package>.<Service>/<Method>`) of an endpoint a server answers over
/// gRPC.
pub const GRPC_METADATA: &str = "grpc";

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
    #[error("unsupported content type `{0}`, expected one of: {SUPPORTED}")]
    Unsupported(String),
    /// The codec needs a kind of type this one is not: a protobuf body
    /// for a type that is not a protobuf message, or JSON or MessagePack
    /// for one that has no serde.
    #[error("{content_type} is not available for {type_name}: {reason}")]
    Unavailable {
        /// The codec's content type.
        content_type: &'static str,
        /// The type's name.
        type_name: &'static str,
        /// What the type would need.
        reason: &'static str,
    },
}

impl CodecError {
    /// A decode error of the codec for `content_type`.
    pub fn decode(content_type: &'static str, err: impl fmt::Display) -> Self {
        CodecError::Decode {
            content_type,
            message: err.to_string(),
        }
    }

    /// `content_type` has no codec for a `T`, for `reason`.
    pub(crate) fn unavailable<T: ?Sized>(content_type: ContentType, reason: &'static str) -> Self {
        CodecError::Unavailable {
            content_type: content_type.as_str(),
            type_name: std::any::type_name::<T>(),
            reason,
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

/// The content types this build has codecs for, as error messages list
/// them.
#[cfg(feature = "protobuf")]
const SUPPORTED: &str = "application/json, application/msgpack, application/protobuf";
#[cfg(not(feature = "protobuf"))]
const SUPPORTED: &str = "application/json, application/msgpack";

/// The content types micro has codecs for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContentType {
    /// `application/json`.
    #[default]
    Json,
    /// `application/msgpack` (`application/x-msgpack` is accepted).
    MsgPack,
    /// `application/protobuf` (`application/x-protobuf` is accepted), for
    /// the message types of a `#[service(protobuf)]`; recognised in headers
    /// with the `protobuf` feature. [`encode`](Self::encode) and
    /// [`decode`](Self::decode), which take serde types, refuse it.
    Protobuf,
}

impl ContentType {
    /// The canonical header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            ContentType::Json => JsonCodec::CONTENT_TYPE,
            ContentType::MsgPack => MsgPackCodec::CONTENT_TYPE,
            ContentType::Protobuf => "application/protobuf",
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
        } else if cfg!(feature = "protobuf")
            && (essence.eq_ignore_ascii_case("application/protobuf")
                || essence.eq_ignore_ascii_case("application/x-protobuf")
                || essence.eq_ignore_ascii_case("application/vnd.google.protobuf"))
        {
            Some(ContentType::Protobuf)
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
            ContentType::Protobuf => Err(CodecError::unavailable::<T>(self, NOT_PROTOBUF)),
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
            ContentType::Protobuf => Err(CodecError::unavailable::<T>(self, NOT_PROTOBUF)),
        }
    }

    /// The header value, ready to send.
    pub(crate) fn header_value(self) -> http::HeaderValue {
        http::HeaderValue::from_static(self.as_str())
    }
}

/// Why a serde type cannot travel as protobuf.
const NOT_PROTOBUF: &str = "protobuf bodies need a type that implements `prost::Message`, \
     in a `#[service(protobuf)]`";

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
            ContentType::for_request(Some("text/csv"))
                .unwrap_err()
                .to_string(),
            format!("unsupported content type `text/csv`, expected one of: {SUPPORTED}")
        );
        assert_eq!(
            ContentType::from_header("application/x-protobuf"),
            cfg!(feature = "protobuf").then_some(ContentType::Protobuf)
        );
        // A serde value cannot be a protobuf body: it says why.
        let err = ContentType::Protobuf.encode(&1u8).unwrap_err().to_string();
        assert!(err.contains("prost::Message"), "{err}");
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
