//! The NATS broker.

use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;

use super::{
    Broker, BrokerError, Message, MessageHandler, Published, SubscribeOptions, Subscription,
    check_topic,
};
use crate::backend::nats::NatsConnection;
use crate::codec::ContentType;
use crate::metadata::Metadata;

/// Pub/sub through a NATS server (cargo feature `nats`).
///
/// A topic is a NATS subject and a queue group a NATS queue group. The
/// body is encoded by the codec and sent as the payload; `Micro-Id`,
/// `Content-Type` and the metadata travel as NATS headers, so any NATS
/// client can read what micro publishes, and publish to micro subscribers
/// (a message without `Content-Type` is taken as JSON).
///
/// Core NATS delivers at most once: `publish` returns once the message is
/// handed to the connection, and a subscriber's error is logged, not
/// reported to the publisher. The connection opens on first use, or on
/// [`connect`](Broker::connect).
///
/// ```no_run
/// use std::sync::Arc;
/// use micro::broker::NatsBroker;
///
/// let broker = Arc::new(NatsBroker::new("nats://127.0.0.1:4222"));
/// let client = micro::Client::builder().broker(broker.clone()).build();
/// let service = micro::Service::new("audit").broker(broker);
/// ```
#[derive(Clone, Debug)]
pub struct NatsBroker {
    connection: Arc<NatsConnection>,
}

/// The server a NATS backend uses when given none.
pub(crate) const NATS_DEFAULT_URL: &str = "nats://127.0.0.1:4222";

impl NatsBroker {
    /// A broker for the NATS server at `url` (`nats://host:port`), on a
    /// connection of its own. [`Backends`](crate::Backends) chosen with
    /// `MICRO_BROKER=nats` share theirs with the bundle's other parts.
    pub fn new(url: impl Into<String>) -> Self {
        Self::on(NatsConnection::new(url))
    }

    /// A broker on a client the caller opened, shared with the caller's
    /// own use of it.
    pub fn with_client(client: async_nats::Client) -> Self {
        Self::on(NatsConnection::from_client(client))
    }

    /// A broker for `MICRO_BROKER_ADDRESS`, or `nats://127.0.0.1:4222`, on
    /// a connection of its own.
    pub fn from_env() -> Self {
        let (_, address) = crate::backend::from_env("BROKER");
        Self::new(address.unwrap_or_else(|| NATS_DEFAULT_URL.to_owned()))
    }

    /// A broker on `connection`, which other parts may share.
    pub(crate) fn on(connection: Arc<NatsConnection>) -> Self {
        Self { connection }
    }

    async fn client(&self) -> Result<&async_nats::Client, BrokerError> {
        self.connection
            .client()
            .await
            .map_err(BrokerError::Unavailable)
    }
}

/// The header names micro sends, parsed once.
const MICRO_ID: async_nats::HeaderName = async_nats::HeaderName::from_static("Micro-Id");
const CONTENT_TYPE: async_nats::HeaderName = async_nats::HeaderName::from_static("Content-Type");

/// A NATS message as micro's.
fn from_nats(msg: async_nats::Message) -> Message {
    let mut metadata = Metadata::new();
    let mut id = None;
    let mut content_type = ContentType::Json;
    if let Some(headers) = &msg.headers {
        for (name, values) in headers.iter() {
            let name: &str = name.as_ref();
            let Some(value) = values.first().map(async_nats::HeaderValue::as_str) else {
                continue;
            };
            if name.eq_ignore_ascii_case("micro-id") {
                id = Some(value.to_owned());
            } else if name.eq_ignore_ascii_case("content-type") {
                content_type = ContentType::from_header(value).unwrap_or_default();
            } else {
                metadata.insert(name, value);
            }
        }
    }
    Message {
        topic: msg.subject.as_str().to_owned(),
        id: id.unwrap_or_else(crate::wire::new_id),
        metadata,
        content_type,
        body: msg.payload,
        trace: None,
    }
}

impl Broker for NatsBroker {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn connect(&self) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move { self.client().await.map(drop) })
    }

    fn disconnect(&self) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            if let Some(client) = self.connection.connected() {
                client
                    .flush()
                    .await
                    .map_err(|e| BrokerError::Backend(e.to_string()))?;
            }
            Ok(())
        })
    }

    fn publish(&self, message: Message) -> BoxFuture<'_, Result<Published, BrokerError>> {
        Box::pin(async move {
            check_topic(&message.topic)?;
            let client = self.client().await?;
            let mut headers = async_nats::HeaderMap::new();
            for (k, v) in message.metadata.iter() {
                headers.insert(k, v);
            }
            headers.insert(MICRO_ID, message.id.clone());
            headers.insert(CONTENT_TYPE, message.content_type.as_str());
            client
                .publish_with_headers(message.topic, headers, message.body)
                .await
                .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
            // NATS core tells nobody who listened.
            Ok(Published::new(message.id, None))
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
            let client = self.client().await?;
            let subject = topic.to_owned();
            let mut subscriber = match &options.queue {
                Some(queue) => client.queue_subscribe(subject, queue.clone()).await,
                None => client.subscribe(subject).await,
            }
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
            // Make sure the server has the subscription before returning,
            // so that what is published next, on any connection, reaches it.
            round_trip(client)
                .await
                .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
            let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
            let owned = topic.to_owned();
            let task = tokio::spawn(async move {
                loop {
                    let next = tokio::select! {
                        // In this order, without select's random pick:
                        // a stop is seen even while messages keep coming.
                        biased;
                        _ = &mut stop_rx => break,
                        next = subscriber.next() => next,
                    };
                    let Some(msg) = next else { break };
                    if let Err(e) = handler(from_nats(msg)).await {
                        tracing::warn!(topic = %owned, error = %e, "subscriber failed");
                    }
                }
                let _ = subscriber.unsubscribe().await;
            });
            Ok(Subscription::new(
                topic,
                options.queue,
                move || async move {
                    let _ = stop_tx.send(());
                    let _ = task.await;
                    Ok(())
                },
            ))
        })
    }
}

/// Returns once the server has read everything `client` sent before it.
///
/// `flush` only writes the buffer to the socket; the server may still be
/// behind. A server handles one connection's commands in order, so a
/// message published to this connection's own fresh inbox comes back only
/// after every earlier command (a `SUB` above all) took effect.
async fn round_trip(client: &async_nats::Client) -> Result<(), String> {
    let inbox = client.new_inbox();
    let mut probe = (client.subscribe(inbox.clone()).await).map_err(|e| e.to_string())?;
    (client.publish(inbox, bytes::Bytes::new()).await).map_err(|e| e.to_string())?;
    (client.flush().await).map_err(|e| e.to_string())?;
    let answered = tokio::time::timeout(std::time::Duration::from_secs(10), probe.next()).await;
    let _ = probe.unsubscribe().await;
    match answered {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("the connection closed while subscribing".to_owned()),
        Err(_) => Err("the server did not confirm the subscription within 10 s".to_owned()),
    }
}
