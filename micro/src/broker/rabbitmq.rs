//! The RabbitMQ broker (AMQP 0.9.1, on lapin).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

use super::{
    Broker, BrokerError, Message, MessageHandler, Published, SubscribeOptions, Subscription,
    check_topic,
};
use crate::codec::ContentType;
use crate::metadata::Metadata;

/// The server a RabbitMQ broker uses when given none.
pub(crate) const RABBITMQ_DEFAULT_URL: &str = "amqp://127.0.0.1:5672/%2f";

/// The exchange micro publishes to, unless told another.
pub const DEFAULT_EXCHANGE: &str = "micro";

/// How many times a message is handed to a handler that fails before it is
/// dead-lettered.
pub const MAX_ATTEMPTS: u32 = 5;

/// How many deliveries a subscriber holds unacknowledged at once.
const PREFETCH: u16 = 64;

/// Pub/sub through RabbitMQ (cargo feature `rabbitmq`).
///
/// - A topic is a routing key on the durable topic exchange `micro`, so
///   AMQP clients bind to micro's topics with the usual `*` and `#`.
/// - A queue group is a durable quorum queue, `micro.<topic>.<group>`,
///   shared by the group's members: each message reaches one of them, and
///   messages wait there while no member runs or RabbitMQ restarts.
/// - A subscriber without a group has an exclusive queue of its own that
///   goes away with it.
/// - The id travels as the AMQP `message_id`, the codec as `content_type`,
///   the metadata as headers; messages are persistent.
/// - A publish waits for the broker's confirm: `Ok` means RabbitMQ has the
///   message; a message no queue takes is `Ok` with
///   [`Published::delivered`] `Some(0)`.
/// - A subscriber acknowledges a message after its handler returned `Ok`.
///   A handler's error requeues it; after [`MAX_ATTEMPTS`] deliveries it
///   goes to the exchange `micro.dead-letter` and the durable queue of the
///   same name, where nothing is lost.
/// - When the connection drops (RabbitMQ restarted), publishes fail with
///   503 until it is back, and subscribers reconnect and subscribe again on
///   their own, with a backoff up to 2 s.
#[derive(Clone, Debug)]
pub struct RabbitBroker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    connection: Arc<RabbitConnection>,
    exchange: String,
    /// The channel in confirm mode that publishes, once opened.
    publisher: tokio::sync::Mutex<Option<Channel>>,
}

/// A connection to one RabbitMQ URL that every part of a bundle shares,
/// opened on first use and opened again after it dropped.
pub(crate) struct RabbitConnection {
    url: String,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

impl std::fmt::Debug for RabbitConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitConnection")
            .field("url", &redact(&self.url))
            .finish_non_exhaustive()
    }
}

impl RabbitConnection {
    pub(crate) fn new(url: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            url: url.into(),
            connection: tokio::sync::Mutex::new(None),
        })
    }

    /// A channel on the live connection, connecting first if there is none.
    async fn channel(&self) -> Result<Channel, BrokerError> {
        let mut held = self.connection.lock().await;
        let connection = match held.as_ref() {
            Some(c) if c.status().connected() => c.clone(),
            _ => {
                let properties =
                    ConnectionProperties::default().with_connection_name("micro".into());
                let connection = Connection::connect(&self.url, properties)
                    .await
                    .map_err(|e| self.unavailable(&e))?;
                let connection = Arc::new(connection);
                *held = Some(connection.clone());
                connection
            }
        };
        drop(held);
        connection
            .create_channel()
            .await
            .map_err(|e| self.unavailable(&e))
    }

    fn unavailable(&self, e: &lapin::Error) -> BrokerError {
        BrokerError::Unavailable(format!("rabbitmq at {}: {e}", redact(&self.url)))
    }
}

impl RabbitBroker {
    /// A broker for the RabbitMQ server at `url`
    /// (`amqp://user:password@host:5672/%2f`), on a connection of its own.
    /// [`Backends`](crate::Backends) chosen with `MICRO_BROKER=rabbitmq`
    /// share theirs with the bundle.
    pub fn new(url: impl Into<String>) -> Self {
        Self::on(RabbitConnection::new(url))
    }

    /// This broker publishing to, and binding its queues on, `exchange`
    /// instead of `micro`.
    #[must_use]
    pub fn with_exchange(self, exchange: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                connection: self.inner.connection.clone(),
                exchange: exchange.into(),
                publisher: tokio::sync::Mutex::new(None),
            }),
        }
    }

    pub(crate) fn on(connection: Arc<RabbitConnection>) -> Self {
        Self {
            inner: Arc::new(Inner {
                connection,
                exchange: DEFAULT_EXCHANGE.to_owned(),
                publisher: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// A channel with the exchanges declared (they are idempotent).
    async fn declared(&self) -> Result<Channel, BrokerError> {
        let channel = self.inner.connection.channel().await?;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        for exchange in [self.inner.exchange.as_str(), DEAD_LETTER] {
            channel
                .exchange_declare(
                    exchange.into(),
                    lapin::ExchangeKind::Topic,
                    durable,
                    FieldTable::default(),
                )
                .await
                .map_err(|e| self.inner.connection.unavailable(&e))?;
        }
        let queue = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(DEAD_LETTER.into(), queue, FieldTable::default())
            .await
            .map_err(|e| self.inner.connection.unavailable(&e))?;
        channel
            .queue_bind(
                DEAD_LETTER.into(),
                DEAD_LETTER.into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| self.inner.connection.unavailable(&e))?;
        Ok(channel)
    }

    /// The publishing channel, opened (in confirm mode) if there is none.
    async fn publisher(&self) -> Result<Channel, BrokerError> {
        let mut held = self.inner.publisher.lock().await;
        if let Some(channel) = held.as_ref()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        let channel = self.declared().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| self.inner.connection.unavailable(&e))?;
        *held = Some(channel.clone());
        Ok(channel)
    }

    /// Declares the queue a subscription reads and binds it to `topic`;
    /// its name.
    async fn queue(
        &self,
        channel: &Channel,
        topic: &str,
        group: Option<&str>,
    ) -> Result<ShortString, BrokerError> {
        let fail = |e: lapin::Error| self.inner.connection.unavailable(&e);
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(DEAD_LETTER.into()),
        );
        let (name, options) = match group {
            Some(group) => {
                // Shared and kept: a quorum queue counts deliveries, and
                // dead-letters a message past the limit.
                arguments.insert(
                    "x-queue-type".into(),
                    AMQPValue::LongString("quorum".into()),
                );
                arguments.insert(
                    "x-delivery-limit".into(),
                    AMQPValue::LongInt(i32::try_from(MAX_ATTEMPTS - 1).unwrap_or(4)),
                );
                let name = format!("{}.{topic}.{group}", self.inner.exchange);
                let options = QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                };
                (name, options)
            }
            None => {
                let options = QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                };
                (String::new(), options)
            }
        };
        let queue = channel
            .queue_declare(name.into(), options, arguments)
            .await
            .map_err(fail)?;
        let name = queue.name().clone();
        channel
            .queue_bind(
                name.clone(),
                self.inner.exchange.as_str().into(),
                topic.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(fail)?;
        Ok(name)
    }

    /// A consumer of `topic`'s queue on a fresh channel.
    async fn consume(
        &self,
        topic: &str,
        group: Option<&str>,
    ) -> Result<(Channel, lapin::Consumer), BrokerError> {
        let channel = self.declared().await?;
        let fail = |e: lapin::Error| self.inner.connection.unavailable(&e);
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .map_err(fail)?;
        let queue = self.queue(&channel, topic, group).await?;
        let consumer = channel
            .basic_consume(
                queue,
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(fail)?;
        Ok((channel, consumer))
    }
}

/// Where messages go that failed every attempt.
pub const DEAD_LETTER: &str = "micro.dead-letter";

/// An AMQP delivery as micro's message, its body moved out of it.
fn from_amqp(delivery: &mut lapin::message::Delivery) -> Message {
    let properties = &delivery.properties;
    let mut metadata = Metadata::new();
    if let Some(headers) = properties.headers() {
        for (name, value) in headers {
            let text = match value {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.as_str().to_owned(),
                AMQPValue::Boolean(b) => b.to_string(),
                AMQPValue::LongInt(n) => n.to_string(),
                AMQPValue::LongLongInt(n) => n.to_string(),
                _ => continue,
            };
            metadata.insert(name.as_str(), text);
        }
    }
    let content_type = properties
        .content_type()
        .as_ref()
        .and_then(|c| ContentType::from_header(c.as_str()))
        .unwrap_or_default();
    Message {
        topic: delivery.routing_key.as_str().to_owned(),
        id: properties
            .message_id()
            .as_ref()
            .map_or_else(crate::wire::new_id, |id| id.as_str().to_owned()),
        metadata,
        content_type,
        body: bytes::Bytes::from(std::mem::take(&mut delivery.data)),
        trace: None,
    }
}

impl Broker for RabbitBroker {
    fn name(&self) -> &'static str {
        "rabbitmq"
    }

    fn connect(&self) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move { self.publisher().await.map(drop) })
    }

    fn publish(&self, message: Message) -> BoxFuture<'_, Result<Published, BrokerError>> {
        Box::pin(async move {
            check_topic(&message.topic)?;
            let mut headers = FieldTable::default();
            for (k, v) in message.metadata.iter() {
                headers.insert(k.into(), AMQPValue::LongString(LongString::from(v)));
            }
            let properties = BasicProperties::default()
                .with_message_id(message.id.as_str().into())
                .with_content_type(message.content_type.as_str().into())
                .with_delivery_mode(2)
                .with_headers(headers);
            let options = BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            };
            // Once more on a new channel if the connection dropped since
            // the last publish: the broker may be back.
            let mut last = None;
            for _ in 0..2 {
                let channel = self.publisher().await?;
                let sent = channel
                    .basic_publish(
                        self.inner.exchange.as_str().into(),
                        message.topic.as_str().into(),
                        options,
                        &message.body,
                        properties.clone(),
                    )
                    .await;
                let confirmed = match sent {
                    Ok(confirm) => confirm.await,
                    Err(e) => Err(e),
                };
                match confirmed {
                    Ok(Confirmation::Ack(returned)) => {
                        let delivered = if returned.is_some() { Some(0) } else { None };
                        return Ok(Published::new(message.id, delivered));
                    }
                    Ok(Confirmation::Nack(_)) => {
                        return Err(BrokerError::Backend(format!(
                            "rabbitmq refused the message to {}: not delivered",
                            message.topic
                        )));
                    }
                    Ok(Confirmation::NotRequested) => {
                        return Ok(Published::new(message.id, None));
                    }
                    Err(e) => {
                        *self.inner.publisher.lock().await = None;
                        last = Some(e);
                    }
                }
            }
            let e = last.map(|e| e.to_string()).unwrap_or_default();
            Err(BrokerError::Unavailable(format!(
                "rabbitmq: the message to {} was not delivered: {e}",
                message.topic
            )))
        })
    }

    fn subscribe<'a>(
        &'a self,
        topic: &'a str,
        handler: MessageHandler,
        options: SubscribeOptions,
    ) -> BoxFuture<'a, Result<Subscription, BrokerError>> {
        Box::pin(async move {
            check_topic(topic)?;
            // Subscribed before returning: what is published next is taken.
            let first = self.consume(topic, options.queue.as_deref()).await?;
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let broker = self.clone();
            let owned = topic.to_owned();
            let group = options.queue.clone();
            let auto_ack = options.auto_ack;
            let task = tokio::spawn(async move {
                let mut current = Some(first);
                let mut backoff = Duration::from_millis(100);
                loop {
                    let (channel, consumer) = match current.take() {
                        Some(c) => c,
                        None => match broker.consume(&owned, group.as_deref()).await {
                            Ok(c) => {
                                tracing::info!(topic = %owned, "rabbitmq: subscribed again");
                                backoff = Duration::from_millis(100);
                                c
                            }
                            Err(e) => {
                                tracing::warn!(topic = %owned, error = %e, "rabbitmq: subscribing again");
                                let mut stop = stop_rx.clone();
                                tokio::select! {
                                    () = tokio::time::sleep(backoff) => {}
                                    _ = stop.changed() => return,
                                }
                                backoff = (backoff * 2).min(Duration::from_secs(2));
                                continue;
                            }
                        },
                    };
                    let stopped = deliver(
                        &owned,
                        &channel,
                        consumer,
                        &handler,
                        Delivery {
                            auto_ack,
                            shared: group.is_some(),
                        },
                        stop_rx.clone(),
                    )
                    .await;
                    if stopped {
                        let _ = channel.close(200, "unsubscribed".into()).await;
                        return;
                    }
                    tracing::warn!(topic = %owned, "rabbitmq: the subscription's connection dropped");
                }
            });
            Ok(Subscription::new(
                topic,
                options.queue,
                move || async move {
                    let _ = stop_tx.send(true);
                    let _ = task.await;
                    Ok(())
                },
            ))
        })
    }
}

/// How a subscription's deliveries are settled.
#[derive(Clone, Copy)]
struct Delivery {
    /// Acknowledge after the handler's `Ok`.
    auto_ack: bool,
    /// A group's quorum queue, which counts each message's deliveries for
    /// every member and dead-letters past its limit; an exclusive queue's
    /// failed attempts are counted here.
    shared: bool,
}

/// What identifies a message across its redeliveries: its id, or for a
/// message that came without one, a hash of its body.
fn attempt_key(delivery: &lapin::message::Delivery, body: &[u8]) -> String {
    match delivery.properties.message_id() {
        Some(id) => id.as_str().to_owned(),
        None => {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            body.hash(&mut hasher);
            format!("body:{:x}", hasher.finish())
        }
    }
}

/// Hands each delivery to `handler` until the consumer ends (`false`: the
/// connection dropped) or the subscription stops (`true`).
async fn deliver(
    topic: &str,
    channel: &Channel,
    mut consumer: lapin::Consumer,
    handler: &MessageHandler,
    settle: Delivery,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> bool {
    // Failed attempts of messages on an exclusive queue.
    let mut attempts: HashMap<String, u32> = HashMap::new();
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.changed() => {
                let tag = consumer.tag();
                let _ = channel.basic_cancel(tag, BasicCancelOptions::default()).await;
                return true;
            }
            next = consumer.next() => next,
        };
        let mut delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(e)) => {
                tracing::warn!(%topic, error = %e, "rabbitmq: delivery failed");
                return false;
            }
            None => return false,
        };
        let message = from_amqp(&mut delivery);
        let body = message.body.clone();
        match handler(message).await {
            Ok(()) => {
                if !attempts.is_empty() {
                    attempts.remove(&attempt_key(&delivery, &body));
                }
                if settle.auto_ack {
                    let _ = delivery.ack(BasicAckOptions::default()).await;
                }
            }
            Err(e) => {
                let again = settle.shared || {
                    let key = attempt_key(&delivery, &body);
                    let count = attempts.entry(key.clone()).or_insert(0);
                    *count += 1;
                    let again = *count < MAX_ATTEMPTS;
                    if !again {
                        attempts.remove(&key);
                    }
                    again
                };
                tracing::warn!(%topic, error = %e, requeued = again, "rabbitmq: subscriber failed");
                // A short pause so that a failing message does not spin.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = delivery
                    .nack(BasicNackOptions {
                        requeue: again,
                        ..BasicNackOptions::default()
                    })
                    .await;
            }
        }
    }
}

/// `url` without its password, for logs and errors.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
