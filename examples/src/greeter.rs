//! The greeter service of `examples/proto/greeter.proto`: its messages and
//! tonic stubs generated at build time (examples/build.rs), served by micro
//! as gRPC, protobuf, JSON and MessagePack at once.

use micro::{Error, Result, Stream, Streaming, handler, service};

/// The code generated from greeter.proto: the messages (prost, with serde
/// derived too), and tonic's client and server, which the gRPC benchmark
/// uses as its peer.
#[allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all,
    clippy::pedantic
)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/greeter.v1.rs"));
}

pub use pb::{HelloReply, HelloRequest};

/// greeter.proto's descriptor set, for gRPC server reflection
/// ([`micro::Service::file_descriptor_set`]).
pub const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/greeter.bin"));

/// The `Greeter` service of package `greeter.v1`.
#[derive(Debug, Default)]
pub struct Greeter;

/// The reply to `req`, or why it is refused.
fn greet(req: &HelloRequest) -> Result<HelloReply> {
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

#[service(protobuf, package = "greeter.v1")]
impl Greeter {
    /// Greets `name`, with `times` echoes.
    #[handler]
    async fn say_hello(&self, req: HelloRequest) -> Result<HelloReply> {
        greet(&req)
    }

    /// Greets `name` `times` times, one reply each.
    #[handler]
    async fn lots_of_replies(&self, req: HelloRequest) -> Result<Streaming<HelloReply>> {
        greet(&HelloRequest {
            times: 0,
            ..req.clone()
        })?;
        if req.times > 10_000 {
            return Err(Error::bad_request("times must be at most 10000"));
        }
        Ok(Streaming::iter((1..=req.times).map(move |i| HelloReply {
            message: format!("Hello {} ({i} of {})", req.name, req.times),
            echoes: Vec::new(),
        })))
    }

    /// Greets everyone who sent a request, in one reply.
    #[handler]
    async fn lots_of_greetings(&self, mut requests: Streaming<HelloRequest>) -> Result<HelloReply> {
        let mut names = Vec::new();
        while let Some(req) = requests.recv().await? {
            greet(&req)?;
            names.push(req.name);
        }
        Ok(HelloReply {
            message: format!("Hello {}", names.join(", ")),
            echoes: names,
        })
    }

    /// Answers every request as it comes.
    #[handler]
    async fn bidi_hello(&self, mut stream: Stream<HelloRequest, HelloReply>) -> Result<()> {
        while let Some(req) = stream.recv().await? {
            let reply = greet(&req)?;
            stream.send(reply).await?;
        }
        Ok(())
    }
}
