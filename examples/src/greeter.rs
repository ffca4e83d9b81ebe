//! The greeter service of `examples/proto/greeter.proto`: protobuf
//! messages (as prost-build generates them, with serde too), served as
//! protobuf, JSON and MessagePack at once.

use micro::{Error, Result, handler, service};
use serde::{Deserialize, Serialize};

/// `greeter.v1.HelloRequest`, as prost-build generates it from the
/// `.proto`, with serde derived too (prost-build's `type_attribute`) so
/// that curl can send JSON.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct HelloRequest {
    /// Who to greet.
    #[prost(string, tag = "1")]
    pub name: String,
    /// How many echoes of the name the reply carries.
    #[prost(uint32, tag = "2")]
    #[serde(default)]
    pub times: u32,
}

/// `greeter.v1.HelloReply`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct HelloReply {
    /// The greeting.
    #[prost(string, tag = "1")]
    pub message: String,
    /// The echoes asked for.
    #[prost(string, repeated, tag = "2")]
    pub echoes: Vec<String>,
}

/// The `Greeter` service of package `greeter.v1`.
#[derive(Debug, Default)]
pub struct Greeter;

#[service(protobuf, package = "greeter.v1")]
impl Greeter {
    /// Greets `name`, with `times` echoes.
    #[handler]
    async fn say_hello(&self, req: HelloRequest) -> Result<HelloReply> {
        if req.name.is_empty() {
            return Err(Error::bad_request("name must not be empty"));
        }
        if req.times > 100 {
            return Err(Error::bad_request("times must be at most 100"));
        }
        Ok(HelloReply {
            message: format!("Hello {}", req.name),
            echoes: (1..=req.times)
                .map(|i| format!("{} {i}", req.name))
                .collect(),
        })
    }
}
