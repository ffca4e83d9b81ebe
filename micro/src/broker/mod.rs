//! Publish and subscribe: asynchronous messages between services.
//!
//! A [`Broker`] carries [`Message`]s from publishers to the subscribers of a
//! topic. Subscribers without a queue group each receive every message; for
//! each queue group, exactly one member receives it. The in-process
//! [`MemoryBroker`] is built in.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use micro::broker::{Broker, MemoryBroker, Message, SubscribeOptions};
//! use micro::codec::ContentType;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> micro::Result<()> {
//! let broker = MemoryBroker::new();
//! let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
//! let log = seen.clone();
//! let _sub = broker
//!     .subscribe("greetings", micro::broker::handler(move |msg: Message| {
//!         let log = log.clone();
//!         async move {
//!             log.lock().unwrap().push(msg.decode::<String>()?);
//!             Ok(())
//!         }
//!     }), SubscribeOptions::default())
//!     .await?;
//! broker.publish(Message::encode("greetings", &"hello", ContentType::Json)?).await?;
//! assert_eq!(*seen.lock().unwrap(), ["hello"]);
//! # Ok(()) }
//! ```

mod advert;
mod http;
mod local;
mod memory;
#[cfg(feature = "mqtt")]
#[cfg_attr(docsrs, doc(cfg(feature = "mqtt")))]
mod mqtt;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
mod nats;
#[cfg(feature = "rabbitmq")]
#[cfg_attr(docsrs, doc(cfg(feature = "rabbitmq")))]
mod rabbitmq;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use advert::Advertisement;
pub use http::HttpBroker;
pub use memory::MemoryBroker;
#[cfg(feature = "mqtt")]
pub use mqtt::MqttBroker;
#[cfg(feature = "mqtt")]
pub(crate) use mqtt::{MQTT_DEFAULT_URL, MqttConnection};
#[cfg(feature = "nats")]
pub(crate) use nats::NATS_DEFAULT_URL;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use nats::NatsBroker;
#[cfg(feature = "rabbitmq")]
pub use rabbitmq::{DEAD_LETTER, DEFAULT_EXCHANGE, MAX_ATTEMPTS, RabbitBroker};
#[cfg(feature = "rabbitmq")]
pub(crate) use rabbitmq::{RABBITMQ_DEFAULT_URL, RabbitConnection};

use crate::code;
use crate::codec::ContentType;
use crate::metadata::Metadata;
use crate::{Context, Error, Result};

/// One published message: a topic, an id, metadata, and an encoded body.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Message {
    /// The topic it was published to.
    pub topic: String,
    /// Its id (`Micro-Id`), unique per publish.
    pub id: String,
    /// Metadata from the publisher, sent as headers.
    pub metadata: Metadata,
    /// The body's codec.
    pub content_type: ContentType,
    /// The encoded body.
    pub body: Bytes,
    /// The span delivering it to a subscriber, once one is.
    pub(crate) trace: Option<crate::trace::Trace>,
}

impl Message {
    /// A message with an encoded body and a new id.
    pub fn new(topic: impl Into<String>, content_type: ContentType, body: Bytes) -> Self {
        Self {
            topic: topic.into(),
            id: crate::wire::new_id(),
            metadata: Metadata::new(),
            content_type,
            body,
            trace: None,
        }
    }

    /// A message carrying `value`, encoded with `content_type`.
    ///
    /// # Errors
    /// 500 if the value cannot be encoded.
    pub fn encode<T: Serialize + ?Sized>(
        topic: impl Into<String>,
        value: &T,
        content_type: ContentType,
    ) -> Result<Self> {
        let body = content_type
            .encode(value)
            .map_err(|e| Error::internal(e.to_string()).with_source(e))?;
        Ok(Self::new(topic, content_type, body))
    }

    /// Decodes the body.
    ///
    /// # Errors
    /// 400 if the body is not a valid `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        self.content_type.decode(&self.body).map_err(Error::from)
    }

    /// The context a subscriber sees: the message's id and metadata, and
    /// the publisher's trace continued (a new one if it sent none).
    pub fn context(&self) -> Context {
        let id = ::http::HeaderValue::from_str(&self.id)
            .ok()
            .filter(crate::wire::valid_id)
            .unwrap_or_else(crate::wire::new_id_header);
        let trace = self
            .trace
            .unwrap_or_else(|| crate::trace::Trace::serving(self.metadata.as_headers()));
        Context::from_parts(id, None, self.metadata.clone(), None).with_trace(trace)
    }
}

/// What a subscription runs for each message. `Err` reports the failure to
/// the publisher (where the broker can) and does not acknowledge the
/// message.
pub type MessageHandler = Arc<dyn Fn(Message) -> BoxFuture<'static, Result<()>> + Send + Sync>;

/// A [`MessageHandler`] from an async closure.
pub fn handler<F, Fut>(f: F) -> MessageHandler
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    Arc::new(move |msg| Box::pin(f(msg)))
}

/// Options for [`Broker::subscribe`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SubscribeOptions {
    /// The queue group: each message reaches one member of each group.
    /// Default: none, every subscriber receives every message.
    pub queue: Option<String>,
    /// Acknowledge a message once the handler returns `Ok`, for brokers
    /// that acknowledge. Default: true.
    pub auto_ack: bool,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self {
            queue: None,
            auto_ack: true,
        }
    }
}

impl SubscribeOptions {
    /// Options joining queue group `queue`.
    pub fn queue(queue: impl Into<String>) -> Self {
        Self {
            queue: Some(queue.into()),
            ..Self::default()
        }
    }
}

type Cancel = Box<dyn FnOnce() -> BoxFuture<'static, Result<(), BrokerError>> + Send>;

/// A live subscription; [`unsubscribe`](Self::unsubscribe) ends it.
/// Dropping it leaves it subscribed.
pub struct Subscription {
    topic: String,
    queue: Option<String>,
    cancel: Option<Cancel>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("topic", &self.topic)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// A subscription that `cancel` ends; for broker implementations.
    pub fn new<F, Fut>(topic: impl Into<String>, queue: Option<String>, cancel: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BrokerError>> + Send + 'static,
    {
        Self {
            topic: topic.into(),
            queue,
            cancel: Some(Box::new(move || Box::pin(cancel()))),
        }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The queue group, if any.
    pub fn queue(&self) -> Option<&str> {
        self.queue.as_deref()
    }

    /// Ends the subscription: no message is delivered to it afterwards.
    ///
    /// # Errors
    /// The broker's error if it cannot be reached.
    pub async fn unsubscribe(mut self) -> Result<(), BrokerError> {
        match self.cancel.take() {
            Some(cancel) => cancel().await,
            None => Ok(()),
        }
    }
}

/// What a broker operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The topic is empty or otherwise unusable.
    #[error("invalid topic \"{0}\"")]
    InvalidTopic(String),
    /// Some subscribers failed to take the message.
    #[error("delivering to topic \"{topic}\": {}", describe(.failures))]
    Delivery {
        /// The topic.
        topic: String,
        /// Who failed, and how.
        failures: Vec<(String, Error)>,
    },
    /// The broker is not connected or cannot be reached.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The backend failed.
    #[error("broker backend: {0}")]
    Backend(String),
}

impl BrokerError {
    /// What a publish of `message` that reached `delivered` subscribers
    /// did: `Ok` when nothing failed, else a [`BrokerError::Delivery`].
    pub(crate) fn check_delivery(
        message: &Message,
        delivered: usize,
        failures: Vec<(String, Error)>,
    ) -> Result<Published, BrokerError> {
        if failures.is_empty() {
            Ok(Published::new(message.id.clone(), Some(delivered)))
        } else {
            Err(BrokerError::Delivery {
                topic: message.topic.clone(),
                failures,
            })
        }
    }
}

/// What a publish did, from [`Broker::publish`] and
/// [`Client::publish`](crate::Client::publish).
///
/// A publish to a topic nobody subscribes to is not an error (events are
/// fire and forget, as in Go Micro), but it is visible here:
/// `delivered` is `Some(0)`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// The message's id (`Micro-Id`).
    pub id: String,
    /// How many subscribers took the message: each subscriber without a
    /// queue group, and one for each queue group. `None` where the broker
    /// cannot tell: NATS delivers at most once and does not say who
    /// listened.
    pub delivered: Option<usize>,
}

impl Published {
    /// A report for the message `id`, taken by `delivered` subscribers.
    pub fn new(id: impl Into<String>, delivered: Option<usize>) -> Self {
        Self {
            id: id.into(),
            delivered,
        }
    }
}

fn describe(failures: &[(String, Error)]) -> String {
    failures
        .iter()
        .map(|(who, e)| format!("{who}: {} {}", e.code(), e.detail()))
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<BrokerError> for Error {
    fn from(err: BrokerError) -> Self {
        let code = match &err {
            BrokerError::InvalidTopic(_) => code::BAD_REQUEST,
            // The first failure's code says what kind of failure it was.
            BrokerError::Delivery { failures, .. } => {
                failures.first().map_or(code::INTERNAL, |(_, e)| e.code())
            }
            BrokerError::Unavailable(_) => code::UNAVAILABLE,
            BrokerError::Backend(_) => code::INTERNAL,
        };
        Error::new("", code, err.to_string()).with_source(err)
    }
}

/// Carries messages from publishers to subscribers.
///
/// # Contract
/// - `publish` returns once every chosen subscriber has the message (or
///   the broker has accepted it, for brokers that store); subscribers that
///   fail make it an error where the broker can tell. Its [`Published`]
///   says how many took it, where the broker knows.
/// - For each queue group subscribed to a topic, exactly one member
///   receives each message; every subscriber without a queue receives it.
/// - Methods are called concurrently from many tasks.
///
/// Object safe: services and clients hold an `Arc<dyn Broker>`.
pub trait Broker: Send + Sync + fmt::Debug + 'static {
    /// The backend's name (`memory`, `http`, `nats`).
    fn name(&self) -> &'static str;

    /// Connects, for brokers with a connection. The default does nothing.
    fn connect(&self) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Disconnects. The default does nothing.
    fn disconnect(&self) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Publishes `message` to its topic; says how many subscribers took
    /// it, where the broker can tell.
    fn publish(&self, message: Message) -> BoxFuture<'_, Result<Published, BrokerError>>;

    /// Subscribes `handler` to `topic`.
    fn subscribe<'a>(
        &'a self,
        topic: &'a str,
        handler: MessageHandler,
        options: SubscribeOptions,
    ) -> BoxFuture<'a, Result<Subscription, BrokerError>>;

    /// For a broker whose publishers find subscribers in the registry: the
    /// node metadata that advertises this process's subscriptions, which
    /// the service registers and keeps current. The default is `None`: the
    /// service then lists its own subscriptions, for information.
    fn advertisement(&self) -> Option<Advertisement> {
        None
    }

    /// Hands an event that arrived on the service's own port (`POST /`
    /// with `Micro-Topic`) to the local subscribers: all those without a
    /// queue, or one member of `queue`. Only brokers that deliver over the
    /// service's port (the HTTP broker) take events this way; the default
    /// refuses with 404.
    fn receive(&self, message: Message, queue: Option<String>) -> BoxFuture<'_, Result<()>> {
        let _ = queue;
        Box::pin(std::future::ready(Err(Error::not_found(format!(
            "this service's {} broker does not take events over HTTP (topic \"{}\")",
            self.name(),
            message.topic
        )))))
    }
}

fn _assert_dyn(_: &dyn Broker) {}

/// Checks a topic: non-empty, no whitespace or control characters.
pub(crate) fn check_topic(topic: &str) -> Result<(), BrokerError> {
    if topic.is_empty() || topic.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(BrokerError::InvalidTopic(topic.to_owned()));
    }
    Ok(())
}

/// One subscription a service makes when it starts: a topic, options and
/// the handler. `#[subscribe]` methods of a `#[service]` impl become these.
#[derive(Clone)]
pub struct Subscriber {
    /// The topic.
    pub topic: String,
    /// The options (queue group).
    pub options: SubscribeOptions,
    /// What runs for each message.
    pub handler: MessageHandler,
}

impl Subscriber {
    /// A subscriber of `topic`.
    pub fn new(
        topic: impl Into<String>,
        options: SubscribeOptions,
        handler: MessageHandler,
    ) -> Self {
        Self {
            topic: topic.into(),
            options,
            handler,
        }
    }
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("topic", &self.topic)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A `#[subscribe]` free function, collected from the whole binary with
/// `inventory`. Generated code builds these; not public API.
#[doc(hidden)]
#[derive(Debug)]
pub struct StaticSubscriber {
    /// The topic.
    pub topic: &'static str,
    /// The queue group.
    pub queue: Option<&'static str>,
    /// The function's path, for logs.
    pub name: &'static str,
    /// Decodes the message and calls the function.
    pub handler: fn(Message) -> BoxFuture<'static, Result<()>>,
}

inventory::collect!(StaticSubscriber);

/// Every `#[subscribe]` free function linked into this binary.
pub fn static_subscribers() -> Vec<Subscriber> {
    inventory::iter::<StaticSubscriber>
        .into_iter()
        .map(|s| {
            let options = match s.queue {
                Some(q) => SubscribeOptions::queue(q),
                None => SubscribeOptions::default(),
            };
            let f = s.handler;
            Subscriber::new(s.topic, options, Arc::new(f))
        })
        .collect()
}

/// What the node metadata keys that advertise subscriptions begin with.
pub(crate) const METADATA_PREFIX: &str = "sub.";

/// The node metadata key that advertises subscriptions to `topic`.
pub(crate) fn metadata_key(topic: &str) -> String {
    format!("{METADATA_PREFIX}{topic}")
}

/// What a node's subscriptions to one topic look like in its metadata:
/// queue groups, and `*` for subscribers without one.
pub(crate) fn metadata_value<'a>(queues: impl Iterator<Item = Option<&'a str>>) -> String {
    let mut entries: Vec<&str> = queues.map(|q| q.unwrap_or("*")).collect();
    entries.sort_unstable();
    entries.dedup();
    entries.join(",")
}
