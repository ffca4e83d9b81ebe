//! Events on NATS JetStream: one stream for every topic, a durable pull
//! consumer per group and topic.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer, stream};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio::sync::OnceCell;

use super::{
    ConsumeOptions, DEDUP_WINDOW, Event, Events, EventsError, NewEvent, Published, Receipts,
    Received, Settle, Start,
};
use crate::backend::nats::NatsConnection;
use crate::codec::ContentType;

/// The JetStream stream that holds every topic.
const STREAM: &str = "MICRO_EVENTS";

/// What a topic's subject begins with.
const SUBJECT_PREFIX: &str = "micro.events.";

/// The header the event's id travels in.
const ID: &str = "Micro-Id";

/// The header a metadata entry travels in begins with this.
const META: &str = "Micro-Meta-";

/// Events in NATS JetStream (cargo feature `nats`).
///
/// Every topic is a subject (`micro.events.<topic>`) of one stream,
/// `MICRO_EVENTS`, made on first use with a 2-minute duplicate window, so
/// a publisher's id is stored once per topic (`Nats-Msg-Id` is
/// `<topic>:<id>`; the id itself travels in `Micro-Id`). A group is a durable
/// pull consumer named after the group and the topic, made once and kept:
/// a restarted process resumes where its group stopped, never a new
/// consumer per start. Acks are explicit; a nack is JetStream's delayed
/// `NAK`, which redelivers the event without moving it in the stream.
/// Sequences are the stream's, so one topic's have gaps.
#[derive(Clone, Debug)]
pub struct NatsEvents {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    connection: Arc<NatsConnection>,
    stream: OnceCell<(jetstream::Context, stream::Stream)>,
}

fn unavailable(e: impl std::fmt::Display) -> EventsError {
    EventsError::Unavailable(format!("nats events: {e}"))
}

fn backend(e: impl std::fmt::Display) -> EventsError {
    EventsError::Backend(format!("nats events: {e}"))
}

/// A name part JetStream takes: letters, digits and `-` as they are,
/// anything else `_` and two hex digits (so `__` never appears).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02X}"));
        }
    }
    out
}

/// A header value NATS takes: one line.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

impl NatsEvents {
    /// Events on the NATS server at `url`, on a connection of their own.
    pub fn new(url: impl Into<String>) -> Self {
        Self::on(NatsConnection::new(url))
    }

    /// Events over a client the caller opened.
    pub fn with_client(client: async_nats::Client) -> Self {
        Self::on(NatsConnection::from_client(client))
    }

    /// Events on `connection`, which other parts may share.
    pub(crate) fn on(connection: Arc<NatsConnection>) -> Self {
        Self {
            inner: Arc::new(Inner {
                connection,
                stream: OnceCell::new(),
            }),
        }
    }

    /// The context and the stream, made on first use.
    async fn stream(&self) -> Result<&(jetstream::Context, stream::Stream), EventsError> {
        self.inner
            .stream
            .get_or_try_init(|| async {
                let client = self.inner.connection.client().await.map_err(unavailable)?;
                let js = jetstream::new(client.clone());
                let stream = js
                    .get_or_create_stream(stream::Config {
                        name: STREAM.to_owned(),
                        subjects: vec![format!("{SUBJECT_PREFIX}>")],
                        duplicate_window: DEDUP_WINDOW,
                        storage: stream::StorageType::File,
                        ..Default::default()
                    })
                    .await
                    .map_err(unavailable)?;
                Ok((js, stream))
            })
            .await
    }
}

impl Events for NatsEvents {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn publish<'a>(
        &'a self,
        topic: &'a str,
        event: NewEvent,
    ) -> BoxFuture<'a, Result<Published, EventsError>> {
        Box::pin(async move {
            let (js, _) = self.stream().await?;
            let id = event.id.unwrap_or_else(crate::wire::new_id);
            let mut headers = HeaderMap::new();
            // JetStream deduplicates across the whole stream: the topic
            // goes into the key, so that one id on two topics is two events.
            let dedup = format!("{topic}:{id}");
            headers.insert(async_nats::header::NATS_MESSAGE_ID, dedup.as_str());
            headers.insert(ID, id.as_str());
            headers.insert("Content-Type", event.content_type.as_str());
            for (key, value) in &event.metadata {
                headers.insert(format!("{META}{key}").as_str(), one_line(value).as_str());
            }
            let message = jetstream::message::PublishMessage::build()
                .payload(event.payload)
                .headers(headers);
            let ack = js
                .send_publish(format!("{SUBJECT_PREFIX}{topic}"), message)
                .await
                .map_err(unavailable)?
                .await
                .map_err(unavailable)?;
            Ok(Published {
                id,
                sequence: ack.sequence,
                duplicate: ack.duplicate,
            })
        })
    }

    fn consume<'a>(
        &'a self,
        topic: &'a str,
        options: &'a ConsumeOptions,
    ) -> BoxFuture<'a, Result<Receipts, EventsError>> {
        Box::pin(async move {
            let (_, stream) = self.stream().await?;
            let deliver_policy = match options.start {
                Start::New => consumer::DeliverPolicy::New,
                Start::Beginning => consumer::DeliverPolicy::All,
                Start::Sequence(s) => consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: s.max(1),
                },
                Start::Time(t) => consumer::DeliverPolicy::ByStartTime {
                    start_time: time::OffsetDateTime::from(t),
                },
            };
            let name = format!("{}__{}", escape(&options.group), escape(topic));
            let config = consumer::pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: format!("{SUBJECT_PREFIX}{topic}"),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: options.ack_wait,
                deliver_policy,
                ..Default::default()
            };
            let consumer: consumer::PullConsumer = stream
                .get_or_create_consumer(&name, config)
                .await
                .map_err(unavailable)?;
            let messages = consumer.messages().await.map_err(unavailable)?;
            let receipts = messages.map(|message| {
                let message = message.map_err(backend)?;
                received(message)
            });
            Ok(receipts.boxed())
        })
    }
}

/// A JetStream message as a delivery.
fn received(message: jetstream::Message) -> Result<Received, EventsError> {
    let info = message.info().map_err(backend)?;
    let (sequence, attempt) = (info.stream_sequence, info.delivered);
    let nanos = u64::try_from(info.published.unix_timestamp_nanos()).unwrap_or_default();
    let timestamp = UNIX_EPOCH + Duration::from_nanos(nanos);
    let header = |name: &str| {
        (message.headers.as_ref())
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    let mut metadata = BTreeMap::new();
    if let Some(headers) = &message.headers {
        for (name, values) in headers.iter() {
            let name: &str = name.as_ref();
            if let (Some(key), Some(value)) = (name.strip_prefix(META), values.first()) {
                metadata.insert(key.to_owned(), value.as_str().to_owned());
            }
        }
    }
    let event = Event {
        id: header(ID).unwrap_or_default(),
        topic: (message.subject.as_str())
            .strip_prefix(SUBJECT_PREFIX)
            .unwrap_or_default()
            .to_owned(),
        sequence,
        timestamp,
        metadata,
        content_type: header("Content-Type")
            .and_then(|ct| ContentType::from_header(&ct))
            .unwrap_or_default(),
        payload: message.payload.clone(),
    };
    Ok(Received {
        event,
        attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
        settle: Arc::new(NatsSettle(message)),
    })
}

struct NatsSettle(jetstream::Message);

impl Settle for NatsSettle {
    /// Waits for the server to confirm the ack (JetStream's "ack ack"): a
    /// plain ack is only queued in the client, and a process that exits
    /// right after would lose it, the event coming back to the group.
    fn ack(&self) -> BoxFuture<'_, Result<(), EventsError>> {
        Box::pin(async move { self.0.double_ack().await.map_err(unavailable) })
    }

    fn nack(&self, delay: Duration) -> BoxFuture<'_, Result<(), EventsError>> {
        Box::pin(
            async move { (self.0.ack_with(AckKind::Nak(Some(delay))).await).map_err(unavailable) },
        )
    }

    fn in_progress(&self) -> BoxFuture<'_, Result<(), EventsError>> {
        Box::pin(async move { (self.0.ack_with(AckKind::Progress).await).map_err(unavailable) })
    }
}
