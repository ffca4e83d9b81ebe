//! Go Micro for Rust: a framework for distributed systems development.
//!
//! A service is a plain impl block. `#[service]` and `#[handler]` turn its
//! methods into endpoints that curl, another language or the generated typed
//! client can call (one request and one reply, or [streams](stream) of
//! messages); [`Service`] serves them over HTTP and registers them so
//! that clients find the service by name.
//!
//! ```
//! use micro::{handler, service, Context, Result};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Request { name: String }
//!
//! #[derive(Serialize, Deserialize)]
//! struct Response { message: String }
//!
//! struct Helloworld;
//!
//! #[service]
//! impl Helloworld {
//!     /// Endpoint `Helloworld.Greeting`.
//!     #[handler]
//!     async fn greeting(&self, req: Request) -> Result<Response> {
//!         Ok(Response { message: format!("Hello {}", req.name) })
//!     }
//!
//!     /// Endpoint `Helloworld.Whoami`: a `Context` argument is optional.
//!     #[handler]
//!     async fn whoami(&self, ctx: Context, _req: Request) -> Result<Response> {
//!         let user = ctx.metadata().get("x-user").unwrap_or("nobody");
//!         Ok(Response { message: user.to_owned() })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> micro::Result<()> {
//! // The default registry is mDNS; this example keeps to one process.
//! let registry = std::sync::Arc::new(micro::registry::MemoryRegistry::new());
//!
//! // Serve it on an ephemeral port…
//! let running = micro::Service::new("helloworld")
//!     .address("127.0.0.1:0")
//!     .registry(registry.clone())
//!     .handle(Helloworld)
//!     .start()
//!     .await?;
//!
//! // …and call it by name through the generated client.
//! let client = micro::Client::builder().registry(registry).build();
//! let hello = HelloworldClient::new("helloworld", client);
//! let rsp = hello.greeting(Request { name: "alice".into() }).await?;
//! assert_eq!(rsp.message, "Hello alice");
//!
//! running.stop().await
//! # }
//! ```
//!
//! # Features
//!
//! | part | module | default | status |
//! |---|---|---|---|
//! | RPC server (HTTP/1.1 + h2c, health) | [`server`], [`Service`] | axum | yes |
//! | client (pooled, typed, tower layers) | [`client`] | hyper | yes |
//! | codecs | [`codec`] | JSON, MessagePack | yes |
//! | registry | [`registry`] | mDNS; memory | yes |
//! | selector | [`selector`] | random, round robin, least outstanding; filters | yes |
//! | retries | [`client::RetryPolicy`] | 2, on another node, one deadline | yes |
//! | broker, `#[subscribe]` | [`broker`] | HTTP; memory; NATS (feature `nats`) | yes |
//! | streams: bidirectional, client, server | [`stream`] | WebSocket on the service port | yes |
//! | store | [`store`] | memory; file (redb); Postgres, Redis, NATS KV (features) | yes |
//! | durable events, `#[consume]` | [`events`] | memory; NATS JetStream (feature `nats`); Redis streams (feature `redis`) | yes |
//! | locks, leader election | [`sync`] | memory; Redis, Postgres, NATS KV (features) | yes |
//! | config: layered, typed, hot reload | [`config`] | defaults, files, env, flags; a watched store | yes |
//! | errors | [`Error`] | docs/wire.md JSON | yes |
//!
//! Cargo features: `macros` (default) re-exports `#[service]`,
//! `#[handler]`, `#[subscribe]` and `#[consume]` from `micro-macros`;
//! `nats` adds the NATS broker, KV store and JetStream events; `redis` the
//! Redis store, Redis streams events and Redis locks; `postgres` the Postgres
//! store and Postgres locks.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

pub mod auth;
pub mod backend;
pub mod broker;
pub mod client;
pub mod codec;
pub mod config;
mod context;
mod errors;
pub mod events;
pub mod metadata;
#[cfg(feature = "metrics")]
pub(crate) mod metrics;
pub mod registry;
pub mod selector;
pub mod server;
pub mod service;
pub mod store;
pub mod stream;
pub mod sync;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
pub mod trace;
pub(crate) mod transport;
pub(crate) mod wire;

pub use backend::Backends;
pub use client::Client;
pub use context::Context;
pub use errors::{Error, Result, code};
pub use service::{Service, ServiceHandle};
pub use stream::{Stream, Streaming};

#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
pub use micro_macros::{consume, handler, service, subscribe};

/// Nothing, with the `protobuf` feature; without it, the error that
/// `#[service(protobuf)]` needs it.
#[cfg(feature = "protobuf")]
#[doc(hidden)]
#[macro_export]
macro_rules! __protobuf_enabled {
    () => {};
}

/// Nothing, with the `protobuf` feature; without it, the error that
/// `#[service(protobuf)]` needs it.
#[cfg(not(feature = "protobuf"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __protobuf_enabled {
    () => {
        ::core::compile_error!(
            "`#[service(protobuf)]` needs micro's `protobuf` feature: `micro = { version = \"0.1\", features = [\"protobuf\"] }`"
        );
    };
}

/// What generated code uses. Not public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use std::boxed::Box;
    pub use std::string::String;
    pub use std::sync::Arc;
    pub use std::time::Duration;
    pub use std::vec::Vec;

    pub use futures_util::future::BoxFuture;
    pub use inventory;

    pub use crate::broker::{Message, StaticSubscriber, SubscribeOptions, Subscriber};
    pub use crate::client::stream::server_streaming;
    pub use crate::client::{
        CallOptions, Client, ClientStream, ServiceName, typed_call, typed_call_encoded,
    };
    pub use crate::codec::ContentType;
    #[cfg(feature = "protobuf")]
    pub use crate::codec::probe as proto;
    pub use crate::events::{
        Backoff, ConsumeOptions, Consumer, ConsumerFn, Delivered, Start, StaticConsumer,
    };
    pub use crate::registry::Endpoint;
    pub use crate::server::StreamCall;
    pub use crate::server::{Call, Handler, Reply};
    pub use crate::stream::{Sender, Stream, StreamKind, Streaming};
    pub use crate::{Context, Error, Result};

    /// Stands for `T` in the probes of generated code: `(&&Probe::<T>::new())`
    /// with two traits in scope, one implemented for `&Probe<T>` when `T`
    /// has what it needs and one for `Probe<T>` for any type, picks at the
    /// concrete type (JSON Schemas, stream codecs, protobuf codecs).
    #[derive(Debug)]
    pub struct Probe<T: ?Sized>(std::marker::PhantomData<fn() -> Box<T>>);

    impl<T: ?Sized> Probe<T> {
        /// The probe of `T`.
        pub const fn new() -> Self {
            Self(std::marker::PhantomData)
        }
    }

    impl<T: ?Sized> Default for Probe<T> {
        fn default() -> Self {
            Self::new()
        }
    }

    impl<T: ?Sized> Clone for Probe<T> {
        fn clone(&self) -> Self {
            *self
        }
    }

    impl<T: ?Sized> Copy for Probe<T> {}

    /// The serde codecs of a stream's message type, as the function
    /// pointers a stream keeps: generated code calls
    /// `(&&Probe::<T>::new()).micro_decoder()` (and `micro_encoder`) with
    /// both traits in scope. A serde type gets serde's codecs; any other
    /// type has already failed `assert_message`, which reports it once at
    /// the type, and gets a codec that is never called.
    pub mod stream_codecs {
        use bytes::Bytes;

        use crate::codec::{CodecError, ContentType};

        pub use super::Probe;

        /// A decoder from bytes.
        pub type Decoder<T> = fn(ContentType, &[u8]) -> Result<T, CodecError>;

        /// An encoder to bytes.
        pub type Encoder<T> = fn(ContentType, &T) -> Result<Bytes, CodecError>;

        /// A serde type's codecs.
        pub trait ViaSerde<T> {
            /// Its decoder.
            fn micro_decoder(&self) -> Decoder<T>;
            /// Its encoder.
            fn micro_encoder(&self) -> Encoder<T>;
        }

        impl<T: serde::Serialize + serde::de::DeserializeOwned> ViaSerde<T> for &Probe<T> {
            fn micro_decoder(&self) -> Decoder<T> {
                crate::stream::serde_decoder::<T>
            }
            fn micro_encoder(&self) -> Encoder<T> {
                crate::stream::serde_encoder::<T>
            }
        }

        /// Any other type: never called, the type failed
        /// `assert_message`.
        pub trait ViaNothing<T> {
            /// A decoder that refuses.
            fn micro_decoder(self) -> Decoder<T>;
            /// An encoder that refuses.
            fn micro_encoder(self) -> Encoder<T>;
        }

        impl<T> ViaNothing<T> for Probe<T> {
            fn micro_decoder(self) -> Decoder<T> {
                |content_type, _| Err(CodecError::unavailable::<T>(content_type, "no serde"))
            }
            fn micro_encoder(self) -> Encoder<T> {
                |content_type, _| Err(CodecError::unavailable::<T>(content_type, "no serde"))
            }
        }
    }

    /// The JSON Schema of a type, if it has one: generated code calls
    /// `(&&Probe::<T>::new()).micro_schema()` with both traits in scope,
    /// which picks [`ViaJsonSchema`](schema::ViaJsonSchema) for a type
    /// that derives `schemars::JsonSchema` (with the `schemas` feature)
    /// and [`ViaNothing`](schema::ViaNothing) for any other.
    pub mod schema {
        pub use super::Probe;

        /// The schema of a type that has one.
        pub trait ViaJsonSchema {
            /// The type's JSON Schema.
            fn micro_schema(&self) -> Option<serde_json::Value>;
        }

        #[cfg(feature = "schemas")]
        impl<T: schemars::JsonSchema + ?Sized> ViaJsonSchema for &Probe<T> {
            fn micro_schema(&self) -> Option<serde_json::Value> {
                let schema = schemars::SchemaGenerator::default().into_root_schema_for::<T>();
                Some(schema.to_value())
            }
        }

        /// No schema, for any other type.
        pub trait ViaNothing {
            /// Nothing.
            fn micro_schema(&self) -> Option<serde_json::Value>;
        }

        impl<T: ?Sized> ViaNothing for Probe<T> {
            fn micro_schema(&self) -> Option<serde_json::Value> {
                None
            }
        }
    }

    /// A handler's future must be `Send`, so the server can run it on any
    /// worker thread.
    pub fn assert_send<F: core::future::Future + Send + 'static>(future: F) -> F {
        future
    }

    /// The error for an endpoint index the handler does not have.
    pub fn unknown_endpoint(handler: &str, index: usize) -> Error {
        Error::not_found(std::format!(
            "handler {handler} has no endpoint number {index}"
        ))
    }

    /// A subscriber's result as micro's.
    pub fn acknowledge<E: Into<Error>>(result: core::result::Result<(), E>) -> Result<()> {
        result.map_err(Into::into)
    }

    /// A `#[subscribe]` method as a broker handler: `f` gets the handler and
    /// the message.
    pub fn method_handler<H, F>(handler: Arc<H>, f: F) -> crate::broker::MessageHandler
    where
        H: Send + Sync + 'static,
        F: Fn(Arc<H>, Message) -> BoxFuture<'static, Result<()>> + Send + Sync + 'static,
    {
        Arc::new(move |msg| f(handler.clone(), msg))
    }

    /// A stream's message type must encode and decode, on both sides.
    pub fn assert_message<T>()
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
    }

    /// The registry record of a streaming endpoint: `stream=true` (as Go
    /// Micro marks streams) and `stream.kind`.
    pub fn stream_endpoint(
        name: &str,
        request: &str,
        response: &str,
        kind: StreamKind,
    ) -> Endpoint {
        kind.mark(Endpoint::new(name, request, response))
    }

    /// The one request of a server-streaming endpoint.
    ///
    /// # Errors
    /// 400 if the client half-closed without sending one.
    pub async fn first_request<T>(requests: &mut Streaming<T>) -> Result<T> {
        requests.recv().await?.ok_or_else(|| {
            Error::bad_request(
                "the stream ended before its request: send one message, then the half-close",
            )
        })
    }

    /// Sends the one reply of a client-streaming handler.
    ///
    /// # Errors
    /// The handler's error, or the sender's.
    pub async fn reply_once<T, E: Into<Error>>(
        mut sender: Sender<T>,
        result: core::result::Result<T, E>,
    ) -> Result<()> {
        let value = result.map_err(Into::into)?;
        sender.send(value).await
    }

    /// Sends every reply of a handler that returned a stream, in order.
    ///
    /// # Errors
    /// The handler's error, the first error its stream yields, or the
    /// sender's.
    pub async fn forward<T, E>(
        mut sender: Sender<T>,
        result: core::result::Result<Streaming<T>, E>,
    ) -> Result<()>
    where
        E: Into<Error>,
    {
        let mut replies = result.map_err(Into::into)?;
        while let Some(reply) = replies.recv().await? {
            sender.send(reply).await?;
        }
        Ok(())
    }

    /// The reply to a handler's result.
    pub fn reply<T: serde::Serialize, E: Into<Error>>(
        content_type: ContentType,
        result: core::result::Result<T, E>,
    ) -> Result<Reply> {
        Reply::from_result(content_type, result)
    }
}
