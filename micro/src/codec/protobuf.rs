//! The protobuf codec, on prost.

use bytes::Bytes;

use super::CodecError;

/// Protobuf bodies (`application/protobuf`), with prost: for types that
/// implement `prost::Message`, derived by hand or generated from a
/// `.proto` by prost-build or tonic-build.
///
/// It is not a [`Codec`](super::Codec), whose methods take serde types; a
/// `#[service(protobuf)]` uses it for its message types, and JSON and
/// MessagePack for the same types when they derive serde too.
///
/// ```
/// use micro::codec::ProtobufCodec;
///
/// #[derive(Clone, PartialEq, prost::Message)]
/// struct Hello {
///     #[prost(string, tag = "1")]
///     name: String,
/// }
///
/// let body = ProtobufCodec::encode(&Hello { name: "al".into() });
/// // field 1, length-delimited, 2 bytes: "al"
/// assert_eq!(&body[..], b"\x0a\x02al");
/// assert_eq!(ProtobufCodec::decode::<Hello>(&body).unwrap().name, "al");
/// assert!(ProtobufCodec::decode::<Hello>(b"\x0a\x09al").is_err());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ProtobufCodec;

impl ProtobufCodec {
    /// The canonical content type.
    pub const CONTENT_TYPE: &'static str = "application/protobuf";

    /// Encodes `value`; a message always encodes.
    pub fn encode<T: prost::Message>(value: &T) -> Bytes {
        Bytes::from(value.encode_to_vec())
    }

    /// Encodes `value` at the end of `buf`, without a buffer of its own.
    pub fn encode_into<T: prost::Message>(value: &T, buf: &mut bytes::BytesMut) {
        buf.reserve(value.encoded_len());
        // A BytesMut grows as it is written, so the message always fits.
        let _ = value.encode(buf);
    }

    /// Decodes `body` into a `T`.
    ///
    /// # Errors
    /// [`CodecError::Decode`] if `body` is not a valid `T` (truncated,
    /// a wrong wire type, a string that is not UTF-8, ...).
    pub fn decode<T: prost::Message + Default>(body: &[u8]) -> Result<T, CodecError> {
        T::decode(body).map_err(|e| CodecError::decode(Self::CONTENT_TYPE, e))
    }
}
