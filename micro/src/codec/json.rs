//! The JSON codec.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Codec, CodecError};

/// JSON bodies (`application/json`), with serde_json. The default codec.
///
/// ```
/// use micro::codec::{Codec, JsonCodec};
///
/// let body = JsonCodec.encode(&serde_json::json!({"name": "alice"})).unwrap();
/// assert_eq!(&body[..], br#"{"name":"alice"}"#);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonCodec;

impl JsonCodec {
    /// The JSON codec.
    pub const fn new() -> Self {
        JsonCodec
    }
}

impl Codec for JsonCodec {
    const CONTENT_TYPE: &'static str = "application/json";

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Bytes, CodecError> {
        serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(|e| CodecError::encode(Self::CONTENT_TYPE, e))
    }

    fn decode<T: DeserializeOwned>(&self, body: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(body).map_err(|e| CodecError::decode(Self::CONTENT_TYPE, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Req {
        name: String,
    }

    #[test]
    fn round_trip() {
        let b = JsonCodec.encode(&Req { name: "a".into() }).unwrap();
        assert_eq!(
            JsonCodec.decode::<Req>(&b).unwrap(),
            Req { name: "a".into() }
        );
    }

    #[test]
    fn decode_error_names_the_problem() {
        let err = JsonCodec.decode::<Req>(br#"{"nome":"a"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "decoding application/json body: missing field `name` at line 1 column 12"
        );
    }
}
