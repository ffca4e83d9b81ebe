//! The handler trait that `#[service]` implements, and the call it receives.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::ContentType;
use crate::registry::Endpoint;
use crate::{Context, Error, Result};

/// A set of endpoints under one name: what `#[service]` generates for an
/// impl block, and what [`Service::handle`](crate::Service::handle) takes.
///
/// Implementing it by hand is possible, and is what the macro does:
///
/// ```
/// use std::sync::Arc;
/// use micro::server::{Call, Handler, Reply};
/// use micro::registry::Endpoint;
/// use micro::server::BoxFuture;
///
/// struct Echo;
///
/// impl Handler for Echo {
///     fn name(&self) -> &str { "Echo" }
///     fn endpoints(&self) -> Vec<Endpoint> {
///         vec![Endpoint::new("Echo.Call", "String", "String")]
///     }
///     fn call(self: Arc<Self>, index: usize, call: Call) -> BoxFuture<'static, micro::Result<Reply>> {
///         Box::pin(async move {
///             match index {
///                 0 => {
///                     let text: String = call.decode()?;
///                     Reply::encode(call.reply_content_type(), &text)
///                 }
///                 _ => Err(micro::Error::not_found("no such endpoint")),
///             }
///         })
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// The handler's name: the part of an endpoint before the dot.
    fn name(&self) -> &str;

    /// The endpoints, in dispatch order: `call(i, …)` serves
    /// `endpoints()[i]`. Names are `Name.Method`.
    fn endpoints(&self) -> Vec<Endpoint>;

    /// Serves one request to endpoint number `index`. An index out of range
    /// is a `NotFound` error, never a panic.
    fn call(self: Arc<Self>, index: usize, call: Call) -> BoxFuture<'static, Result<Reply>>;

    /// Serves one stream opened to endpoint number `index`, a streaming
    /// endpoint. `Ok` ends the server's direction and closes the stream;
    /// an error closes it with that error. Default: every index is a
    /// `NotFound` error, for handlers without streaming endpoints.
    fn stream(
        self: Arc<Self>,
        index: usize,
        call: super::StreamCall,
    ) -> BoxFuture<'static, Result<()>> {
        drop(call);
        let err = Error::not_found(format!(
            "handler {} has no streaming endpoint number {index}",
            self.name()
        ));
        Box::pin(std::future::ready(Err(err)))
    }

    /// The subscriptions this handler makes when its service starts: its
    /// `#[subscribe]` methods. Default: none.
    fn subscribers(self: Arc<Self>) -> Vec<crate::broker::Subscriber> {
        Vec::new()
    }

    /// The durable events consumers this handler runs while its service
    /// runs: its `#[consume]` methods. Default: none.
    fn consumers(self: Arc<Self>) -> Vec<crate::events::Consumer> {
        Vec::new()
    }
}

/// One request as a handler receives it: its context, its body and the
/// codecs to decode it and encode the reply with.
#[derive(Debug)]
pub struct Call {
    context: Context,
    body: Bytes,
    content_type: ContentType,
    reply_content_type: ContentType,
}

impl Call {
    /// A call with a context, a body and the body's content type; the reply
    /// uses `reply_content_type`.
    pub fn new(
        context: Context,
        body: Bytes,
        content_type: ContentType,
        reply_content_type: ContentType,
    ) -> Self {
        Self {
            context,
            body,
            content_type,
            reply_content_type,
        }
    }

    /// The request context.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// Takes the context out of the call.
    pub fn into_context(self) -> Context {
        self.context
    }

    /// The raw body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body's content type.
    pub fn content_type(&self) -> ContentType {
        self.content_type
    }

    /// The content type the reply must use.
    pub fn reply_content_type(&self) -> ContentType {
        self.reply_content_type
    }

    /// Decodes the body into the request type.
    ///
    /// # Errors
    /// A 400 error that says why the body does not decode.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        self.content_type.decode(&self.body).map_err(Error::from)
    }
}

/// An encoded reply.
#[derive(Clone, Debug)]
pub struct Reply {
    body: Bytes,
    content_type: ContentType,
}

impl Reply {
    /// Encodes `value` with `content_type`.
    ///
    /// # Errors
    /// A 500 error if the value cannot be encoded.
    pub fn encode<T: Serialize + ?Sized>(content_type: ContentType, value: &T) -> Result<Self> {
        let body = content_type
            .encode(value)
            .map_err(|e| Error::internal(e.to_string()).with_source(e))?;
        Ok(Self { body, content_type })
    }

    /// A reply already encoded with `content_type`.
    pub fn from_bytes(content_type: ContentType, body: Bytes) -> Self {
        Self { body, content_type }
    }

    /// The reply to a handler's result: the encoded value, or the handler's
    /// error converted into [`Error`].
    ///
    /// # Errors
    /// The handler's error, or a 500 error if the value cannot be encoded.
    pub fn from_result<T: Serialize, E: Into<Error>>(
        content_type: ContentType,
        result: Result<T, E>,
    ) -> Result<Self> {
        match result {
            Ok(value) => Self::encode(content_type, &value),
            Err(e) => Err(e.into()),
        }
    }

    /// The encoded body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body's content type.
    pub fn content_type(&self) -> ContentType {
        self.content_type
    }

    pub(crate) fn into_parts(self) -> (ContentType, Bytes) {
        (self.content_type, self.body)
    }
}
