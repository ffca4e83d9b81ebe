//! The MessagePack codec.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Codec, CodecError};

/// MessagePack bodies (`application/msgpack`), with rmp-serde.
///
/// Structs are encoded as maps with field names (`to_vec_named`), not as
/// arrays, so that a client in another language can decode them; both forms
/// are accepted when decoding.
///
/// ```
/// use micro::codec::{Codec, MsgPackCodec};
///
/// #[derive(serde::Serialize)]
/// struct Hello { name: &'static str }
///
/// let body = MsgPackCodec.encode(&Hello { name: "al" }).unwrap();
/// // fixmap(1), fixstr "name", fixstr "al"
/// assert_eq!(&body[..], b"\x81\xa4name\xa2al");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct MsgPackCodec;

impl MsgPackCodec {
    /// The MessagePack codec.
    pub const fn new() -> Self {
        MsgPackCodec
    }
}

impl Codec for MsgPackCodec {
    const CONTENT_TYPE: &'static str = "application/msgpack";

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Bytes, CodecError> {
        rmp_serde::to_vec_named(value)
            .map(Bytes::from)
            .map_err(|e| CodecError::encode(Self::CONTENT_TYPE, e))
    }

    fn decode<T: DeserializeOwned>(&self, body: &[u8]) -> Result<T, CodecError> {
        rmp_serde::from_slice(body).map_err(|e| CodecError::decode(Self::CONTENT_TYPE, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Req {
        name: String,
        n: u32,
    }

    #[test]
    fn round_trip_named_and_positional() {
        let v = Req {
            name: "a".into(),
            n: 7,
        };
        let named = MsgPackCodec.encode(&v).unwrap();
        assert_eq!(MsgPackCodec.decode::<Req>(&named).unwrap(), v);
        let positional = rmp_serde::to_vec(&v).unwrap();
        assert_eq!(MsgPackCodec.decode::<Req>(&positional).unwrap(), v);
    }

    #[test]
    fn garbage_is_a_decode_error() {
        let err = MsgPackCodec.decode::<Req>(b"\xc1").unwrap_err();
        assert!(matches!(err, CodecError::Decode { .. }), "{err}");
    }
}
