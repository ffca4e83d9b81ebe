//! What `#[service(protobuf)]` generates code against: a message type's
//! bodies in each codec it has, the choice made at the concrete type.
//!
//! Generated code calls `(&&Probe::<T>::new()).micro_decode(..)` (and
//! `micro_encode`) with the traits of both rows in scope. For a type that
//! derives serde as well as `prost::Message`, the `Serde` traits apply and
//! every codec works; for a protobuf-only type (prost-build's output with
//! no serde derives) the `Prost` ones do, and JSON or MessagePack is
//! refused with a 415 that says so.

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{CodecError, ContentType, ProtobufCodec};

/// A protobuf message: what `#[service(protobuf)]` needs of its request
/// and response types.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a protobuf message",
    label = "not a protobuf message",
    note = "a `#[service(protobuf)]` takes and returns protobuf messages: derive `prost::Message` (with `Default`), or generate the type from a `.proto` with prost-build"
)]
pub trait ProtoMessage: prost::Message + Default + Send + 'static {}

impl<T: prost::Message + Default + Send + 'static> ProtoMessage for T {}

/// Checks, at the user's type, that it is a protobuf message.
pub fn assert_proto<T: ProtoMessage>() {}

pub use crate::__private::Probe;

/// Decoding a type that has serde too: every codec.
pub trait DecodeSerde<T> {
    /// `body` as a `T`, by `content_type`.
    ///
    /// # Errors
    /// The codec's error.
    fn micro_decode(&self, content_type: ContentType, body: &[u8]) -> Result<T, CodecError>;
}

impl<T: ProtoMessage + DeserializeOwned> DecodeSerde<T> for &Probe<T> {
    fn micro_decode(&self, content_type: ContentType, body: &[u8]) -> Result<T, CodecError> {
        match content_type {
            ContentType::Protobuf => ProtobufCodec::decode(body),
            other => other.decode(body),
        }
    }
}

/// Decoding a protobuf-only type.
pub trait DecodeProst<T> {
    /// `body` as a `T`, if it is protobuf.
    ///
    /// # Errors
    /// The codec's error; [`CodecError::Unavailable`] for another codec.
    fn micro_decode(&self, content_type: ContentType, body: &[u8]) -> Result<T, CodecError>;
}

impl<T: ProtoMessage> DecodeProst<T> for Probe<T> {
    fn micro_decode(&self, content_type: ContentType, body: &[u8]) -> Result<T, CodecError> {
        match content_type {
            ContentType::Protobuf => ProtobufCodec::decode(body),
            other => Err(protobuf_only::<T>(other)),
        }
    }
}

/// Encoding a type that has serde too: every codec.
pub trait EncodeSerde<T> {
    /// `value` encoded with `content_type`.
    ///
    /// # Errors
    /// The codec's error.
    fn micro_encode(&self, content_type: ContentType, value: &T) -> Result<Bytes, CodecError>;

    /// `value` encoded with `content_type` at the end of `buf`.
    ///
    /// # Errors
    /// The codec's error.
    fn micro_encode_into(
        &self,
        content_type: ContentType,
        value: &T,
        buf: &mut BytesMut,
    ) -> Result<(), CodecError>;
}

impl<T: ProtoMessage + Serialize> EncodeSerde<T> for &Probe<T> {
    fn micro_encode(&self, content_type: ContentType, value: &T) -> Result<Bytes, CodecError> {
        match content_type {
            ContentType::Protobuf => Ok(ProtobufCodec::encode(value)),
            other => other.encode(value),
        }
    }

    fn micro_encode_into(
        &self,
        content_type: ContentType,
        value: &T,
        buf: &mut BytesMut,
    ) -> Result<(), CodecError> {
        match content_type {
            ContentType::Protobuf => ProtobufCodec::encode_into(value, buf),
            other => buf.extend_from_slice(&other.encode(value)?),
        }
        Ok(())
    }
}

/// Encoding a protobuf-only type.
pub trait EncodeProst<T> {
    /// `value` encoded, if `content_type` is protobuf.
    ///
    /// # Errors
    /// [`CodecError::Unavailable`] for another codec.
    fn micro_encode(&self, content_type: ContentType, value: &T) -> Result<Bytes, CodecError>;

    /// `value` encoded at the end of `buf`, if `content_type` is protobuf.
    ///
    /// # Errors
    /// [`CodecError::Unavailable`] for another codec.
    fn micro_encode_into(
        &self,
        content_type: ContentType,
        value: &T,
        buf: &mut BytesMut,
    ) -> Result<(), CodecError>;
}

impl<T: ProtoMessage> EncodeProst<T> for Probe<T> {
    fn micro_encode(&self, content_type: ContentType, value: &T) -> Result<Bytes, CodecError> {
        let mut buf = BytesMut::new();
        self.micro_encode_into(content_type, value, &mut buf)?;
        Ok(buf.freeze())
    }

    fn micro_encode_into(
        &self,
        content_type: ContentType,
        value: &T,
        buf: &mut BytesMut,
    ) -> Result<(), CodecError> {
        match content_type {
            ContentType::Protobuf => {
                ProtobufCodec::encode_into(value, buf);
                Ok(())
            }
            other => Err(protobuf_only::<T>(other)),
        }
    }
}

/// Any other type: only there so that a type that is not a protobuf
/// message is reported once, at the type (by [`assert_proto`]), and not
/// again at each generated call.
pub trait Neither<T> {
    /// Never called: the type failed [`assert_proto`].
    ///
    /// # Errors
    /// Always.
    fn micro_decode(self, content_type: ContentType, body: &[u8]) -> Result<T, CodecError>;

    /// Never called: the type failed [`assert_proto`].
    ///
    /// # Errors
    /// Always.
    fn micro_encode(self, content_type: ContentType, value: &T) -> Result<Bytes, CodecError>;

    /// Never called: the type failed [`assert_proto`].
    ///
    /// # Errors
    /// Always.
    fn micro_encode_into(
        self,
        content_type: ContentType,
        value: &T,
        buf: &mut BytesMut,
    ) -> Result<(), CodecError>;
}

impl<T> Neither<T> for Probe<T> {
    fn micro_decode(self, content_type: ContentType, _: &[u8]) -> Result<T, CodecError> {
        Err(protobuf_only::<T>(content_type))
    }

    fn micro_encode(self, content_type: ContentType, _: &T) -> Result<Bytes, CodecError> {
        Err(protobuf_only::<T>(content_type))
    }

    fn micro_encode_into(
        self,
        content_type: ContentType,
        _: &T,
        _: &mut BytesMut,
    ) -> Result<(), CodecError> {
        Err(protobuf_only::<T>(content_type))
    }
}

fn protobuf_only<T>(content_type: ContentType) -> CodecError {
    CodecError::unavailable::<T>(
        content_type,
        "the type is a protobuf message without serde: send application/protobuf, \
         or derive serde's Serialize and Deserialize on it too",
    )
}

/// The reply to a handler's result, its value encoded by `encode`.
///
/// # Errors
/// The handler's error, or the codec's (415 for a codec the type lacks).
pub fn reply<T, E: Into<crate::Error>>(
    content_type: ContentType,
    result: Result<T, E>,
    encode: impl FnOnce(ContentType, &T) -> Result<Bytes, CodecError>,
) -> crate::Result<crate::server::Reply> {
    let value = result.map_err(Into::into)?;
    let body = encode(content_type, &value)?;
    Ok(crate::server::Reply::from_bytes(content_type, body))
}
