//! Deliveries as a consumer sees them, and dead letters: the retry limit
//! and the dead-letter topic, the same on every backend.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde::de::DeserializeOwned;

use super::{ConsumeOptions, Event, Events, NewEvent, Receipts, Received};
use crate::{Error, Result};

/// The deliveries of a topic to one member of a group.
pub type Deliveries = BoxStream<'static, Result<Delivery>>;

/// What a group's deliveries share: where dead letters go.
#[derive(Debug)]
pub(super) struct Group {
    pub(super) backend: Arc<dyn Events>,
    pub(super) options: ConsumeOptions,
    pub(super) dead_letter: String,
}

/// One delivery of an event to a member of a group, to settle once: ack
/// when done, nack to try again later, reject to give up on it. Dropped
/// unsettled, it is delivered again after the ack wait.
pub struct Delivery {
    received: Received,
    group: Arc<Group>,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("event", &self.received.event)
            .field("attempt", &self.received.attempt)
            .field("group", &self.group.options.group)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// The event.
    pub fn event(&self) -> &Event {
        &self.received.event
    }

    /// Decodes the event's payload.
    ///
    /// # Errors
    /// 400 if the payload is not a valid `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        self.received.event.decode()
    }

    /// Which delivery of the event this is, from 1.
    pub fn attempt(&self) -> u32 {
        self.received.attempt
    }

    /// The event's sequence in its topic.
    pub fn sequence(&self) -> u64 {
        self.received.event.sequence
    }

    /// The group it was delivered to.
    pub fn group(&self) -> &str {
        &self.group.options.group
    }

    /// Whether this is the group's last attempt: a nack now dead-letters.
    pub fn last_attempt(&self) -> bool {
        self.received.attempt >= self.group.options.max_attempts
    }

    /// What a handler sees of this delivery, and can extend its ack
    /// deadline with.
    pub fn info(&self) -> Delivered {
        Delivered {
            event: self.received.event.clone(),
            attempt: self.received.attempt,
            group: self.group.clone(),
            settle: self.received.settle.clone(),
        }
    }

    /// Done: the event leaves the group.
    ///
    /// # Errors
    /// 503 if the backend cannot be reached; the event is then delivered
    /// again after the ack wait.
    pub async fn ack(self) -> Result<()> {
        Ok(self.received.settle.ack().await?)
    }

    /// Failed: delivered again after the group's backoff, or, on the last
    /// attempt, dead-lettered with `error`.
    ///
    /// # Errors
    /// As [`ack`](Self::ack).
    pub async fn nack(self, error: &Error) -> Result<()> {
        let delay = self.group.options.backoff.delay(self.received.attempt);
        self.nack_after(delay, error).await
    }

    /// As [`nack`](Self::nack), after `delay` rather than the backoff's.
    ///
    /// # Errors
    /// As [`ack`](Self::ack).
    pub async fn nack_after(self, delay: Duration, error: &Error) -> Result<()> {
        if self.last_attempt() {
            return self.reject(error).await;
        }
        Ok(self.received.settle.nack(delay).await?)
    }

    /// Given up on: dead-lettered now with `error`, then acked. Nothing
    /// is dropped: if the dead letter cannot be stored, the event is not
    /// acked and comes back after the ack wait.
    ///
    /// # Errors
    /// As [`ack`](Self::ack), or the dead letter's publish error.
    pub async fn reject(self, error: &Error) -> Result<()> {
        dead_letter(&self.group, &self.received, &error.to_string()).await?;
        Ok(self.received.settle.ack().await?)
    }

    /// Still working: the ack wait starts again.
    ///
    /// # Errors
    /// As [`ack`](Self::ack).
    pub async fn in_progress(&self) -> Result<()> {
        Ok(self.received.settle.in_progress().await?)
    }
}

/// Stores the dead letter of `received`: the original payload, its
/// origin in the metadata, an id made from the original's so that a retry
/// stores it once.
async fn dead_letter(group: &Group, received: &Received, error: &str) -> Result<()> {
    let event = &received.event;
    let mut metadata = event.metadata.clone();
    let millis = event
        .timestamp
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    for (key, value) in [
        ("dead.topic", event.topic.clone()),
        ("dead.id", event.id.clone()),
        ("dead.sequence", event.sequence.to_string()),
        ("dead.timestamp", millis.to_string()),
        ("dead.group", group.options.group.clone()),
        ("dead.attempts", received.attempt.to_string()),
        ("dead.error", error.to_owned()),
    ] {
        metadata.insert(key.to_owned(), value);
    }
    let mut letter = NewEvent::new(event.content_type, event.payload.clone())
        .with_id(format!("{}.dead.{}", event.id, group.options.group));
    letter.metadata = metadata;
    group
        .backend
        .publish(&group.dead_letter, letter)
        .await
        .map_err(|e| {
            let e = Error::from(e);
            let detail = format!(
                "dead-lettering event {} to \"{}\": {}",
                event.id,
                group.dead_letter,
                e.detail()
            );
            Error::new("", e.code(), detail)
        })?;
    Ok(())
}

/// The deliveries of `receipts` for `group`: an event whose attempts were
/// used up without an ack (its consumers died or hung) is dead-lettered
/// instead of delivered again.
pub(super) fn deliveries(receipts: Receipts, group: Arc<Group>) -> Deliveries {
    receipts
        .filter_map(move |item| {
            let group = group.clone();
            async move {
                let received = match item {
                    Ok(received) => received,
                    Err(e) => return Some(Err(Error::from(e))),
                };
                if received.attempt > group.options.max_attempts {
                    let error = format!(
                        "not acknowledged within the ack wait ({:?}) in {} attempts",
                        group.options.ack_wait, group.options.max_attempts
                    );
                    let settled = match dead_letter(&group, &received, &error).await {
                        Ok(()) => received.settle.ack().await.map_err(Error::from),
                        Err(e) => Err(e),
                    };
                    return settled.err().map(Err);
                }
                Some(Ok(Delivery { received, group }))
            }
        })
        .boxed()
}

/// A dead letter read back: where the event came from and why it died.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The topic it was published to.
    pub topic: String,
    /// Its id there.
    pub id: String,
    /// Its sequence there.
    pub sequence: u64,
    /// When it was stored there.
    pub timestamp: SystemTime,
    /// The group that gave up on it.
    pub group: String,
    /// How many deliveries it had.
    pub attempts: u32,
    /// The last error.
    pub error: String,
    /// The original metadata.
    pub metadata: BTreeMap<String, String>,
}

impl DeadLetter {
    /// The dead letter `event` carries, if it is one.
    pub fn of(event: &Event) -> Option<Self> {
        let get = |k: &str| event.metadata.get(k);
        let millis: u64 = get("dead.timestamp")?.parse().ok()?;
        Some(Self {
            topic: get("dead.topic")?.clone(),
            id: get("dead.id")?.clone(),
            sequence: get("dead.sequence")?.parse().ok()?,
            timestamp: UNIX_EPOCH + Duration::from_millis(millis),
            group: get("dead.group")?.clone(),
            attempts: get("dead.attempts")?.parse().ok()?,
            error: get("dead.error")?.clone(),
            metadata: (event.metadata.iter())
                .filter(|(k, _)| !k.starts_with("dead."))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }
}

/// What a consuming handler sees of its delivery: the event, which
/// attempt this is, and a way to say it is still working. The consumer
/// that called the handler settles the delivery by its result.
#[derive(Clone)]
pub struct Delivered {
    event: Event,
    attempt: u32,
    group: Arc<Group>,
    settle: Arc<dyn super::Settle>,
}

impl fmt::Debug for Delivered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivered")
            .field("event", &self.event)
            .field("attempt", &self.attempt)
            .field("group", &self.group.options.group)
            .finish_non_exhaustive()
    }
}

impl Delivered {
    /// The event.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// Which delivery of the event this is, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The event's sequence in its topic.
    pub fn sequence(&self) -> u64 {
        self.event.sequence
    }

    /// The group it was delivered to.
    pub fn group(&self) -> &str {
        &self.group.options.group
    }

    /// Whether a failure now dead-letters the event.
    pub fn last_attempt(&self) -> bool {
        self.attempt >= self.group.options.max_attempts
    }

    /// Still working: the ack wait starts again.
    ///
    /// # Errors
    /// 503 if the backend cannot be reached.
    pub async fn in_progress(&self) -> Result<()> {
        Ok(self.settle.in_progress().await?)
    }
}
