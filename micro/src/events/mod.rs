//! Events: durable, replayable streams with consumer groups.
//!
//! The broker's pub/sub is at most once, for notifications. Events are
//! stored before [`publish`](Topics::publish) returns, replayable from the
//! beginning, a sequence or a time, and acknowledged: an event leaves a
//! group only when a member acks it, or when it is dead-lettered after its
//! attempts are used up. Nothing is dropped silently.
//!
//! - A consumer **group** shares a topic's events, each to one member;
//!   different groups each get every event. A service's default group is
//!   its name, so a restarted process resumes where it stopped.
//! - [`Delivery::ack`] acks; [`Delivery::nack`] redelivers after the
//!   group's backoff, or dead-letters once the attempts are used up;
//!   [`Delivery::reject`] dead-letters at once; [`Delivery::in_progress`]
//!   extends the ack deadline. An event not acked within the ack wait is
//!   delivered again.
//! - A **dead letter** is the original event (payload and content type
//!   as they were) published to the dead-letter topic (`<topic>.dead`
//!   unless set), with its origin in the metadata; [`DeadLetter::of`]
//!   reads it back.
//!
//! | backend | `MICRO_EVENTS` | `MICRO_EVENTS_ADDRESS` |
//! |---|---|---|
//! | [`MemoryEvents`] (default) | `memory` | unused; one process |
//! | `NatsEvents` (feature `nats`) | `nats` | `nats://host:4222` (JetStream) |
//! | `RedisEvents` (feature `redis`) | `redis` | `redis://host:6379` (streams; Redis 6.2+) |
//!
//! ```
//! use futures_util::StreamExt;
//! use micro::events::{ConsumeOptions, MemoryEvents, Start, Topics};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> micro::Result<()> {
//! let events = Topics::new(std::sync::Arc::new(MemoryEvents::new()));
//! let stored = events.publish("orders.created", &"order 1").await?;
//! assert_eq!(stored.sequence, 1);
//!
//! let options = ConsumeOptions::group("billing").start(Start::Beginning);
//! let mut deliveries = events.consume("orders.created", options).await?;
//! let delivery = deliveries.next().await.unwrap()?;
//! assert_eq!(delivery.decode::<String>()?, "order 1");
//! assert_eq!(delivery.attempt(), 1);
//! delivery.ack().await?;
//! # Ok(()) }
//! ```

mod consumer;
mod delivery;
mod memory;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
mod nats;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
mod redis;
mod topics;
#[cfg(feature = "redis")]
mod unavailable;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use serde::de::DeserializeOwned;

#[doc(hidden)]
pub use consumer::StaticConsumer;
pub use consumer::{Consumer, ConsumerFn};
pub(crate) use consumer::{Running, static_consumers};
pub use delivery::{DeadLetter, Delivered, Deliveries, Delivery};
pub use memory::MemoryEvents;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use nats::NatsEvents;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisEvents;
pub use topics::Topics;
#[cfg(feature = "redis")]
pub(crate) use unavailable::Unavailable;

use crate::codec::ContentType;
use crate::{Error, code};

/// The longest topic, in bytes.
pub const MAX_TOPIC_LEN: usize = 200;

/// How long a publisher's id is remembered to drop a duplicate.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(120);

/// One stored event.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Event {
    /// Its id: the publisher's, or a new one.
    pub id: String,
    /// The topic it was published to.
    pub topic: String,
    /// Its place in the topic, from 1, in publish order. On backends that
    /// keep every topic in one log (NATS) the numbers of one topic have
    /// gaps but still only grow.
    pub sequence: u64,
    /// When it was stored.
    pub timestamp: SystemTime,
    /// The publisher's metadata.
    pub metadata: BTreeMap<String, String>,
    /// The payload's codec.
    pub content_type: ContentType,
    /// The encoded payload.
    pub payload: Bytes,
}

impl Event {
    /// Decodes the payload.
    ///
    /// # Errors
    /// 400 if the payload is not a valid `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> crate::Result<T> {
        self.content_type.decode(&self.payload).map_err(Error::from)
    }
}

/// An event to publish.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NewEvent {
    /// The id; a new one if `None`. A second event with the same id within
    /// [`DEDUP_WINDOW`] is stored once.
    pub id: Option<String>,
    /// Metadata, kept with the event.
    pub metadata: BTreeMap<String, String>,
    /// The payload's codec.
    pub content_type: ContentType,
    /// The encoded payload.
    pub payload: Bytes,
}

impl NewEvent {
    /// An event with an encoded payload.
    pub fn new(content_type: ContentType, payload: Bytes) -> Self {
        Self {
            id: None,
            metadata: BTreeMap::new(),
            content_type,
            payload,
        }
    }

    /// Sets the id, for deduplication.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Adds one metadata entry.
    #[must_use]
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// What publishing stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// The event's id.
    pub id: String,
    /// Its sequence in the topic.
    pub sequence: u64,
    /// True if an event with this id was already stored within the
    /// window: nothing new was stored and `sequence` is the first one's.
    pub duplicate: bool,
}

/// Where a new group starts reading. A group that exists resumes where it
/// is, whatever its start says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Start {
    /// Events published from now on (the default).
    #[default]
    New,
    /// Every stored event.
    Beginning,
    /// From this sequence on.
    Sequence(u64),
    /// Events stored at or after this time.
    Time(SystemTime),
}

/// How long to wait before delivering a nacked event again: `initial`
/// after the first attempt, multiplied by `factor` after each further
/// attempt, at most `max`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The growth per attempt.
    pub factor: f64,
    /// The longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    /// 1 s, doubling, at most 60 s.
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// `initial`, doubling after each attempt, at most 60 s (or `initial`
    /// if that is longer).
    pub fn exponential(initial: Duration) -> Self {
        Self {
            initial,
            factor: 2.0,
            max: initial.max(Duration::from_secs(60)),
        }
    }

    /// The same delay after every attempt.
    pub fn fixed(delay: Duration) -> Self {
        Self {
            initial: delay,
            factor: 1.0,
            max: delay,
        }
    }

    /// The delay after attempt `attempt` (from 1) failed.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * self.factor.powi(exponent);
        if secs.is_finite() && secs < self.max.as_secs_f64() {
            Duration::from_secs_f64(secs)
        } else {
            self.max
        }
    }
}

/// How a group consumes a topic.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConsumeOptions {
    /// The group: its members share the events.
    pub group: String,
    /// Where a new group starts.
    pub start: Start,
    /// How long a delivery may go unacked before it is delivered again.
    pub ack_wait: Duration,
    /// How many deliveries an event gets before it is dead-lettered.
    pub max_attempts: u32,
    /// The delay before a nacked event is delivered again.
    pub backoff: Backoff,
    /// Where dead letters go; `<topic>.dead` if `None`.
    pub dead_letter: Option<String>,
}

impl ConsumeOptions {
    /// Options for `group`: new events only, a 30 s ack wait, 5 attempts,
    /// the default backoff, dead letters to `<topic>.dead`.
    pub fn group(group: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            start: Start::New,
            ack_wait: Duration::from_secs(30),
            max_attempts: 5,
            backoff: Backoff::default(),
            dead_letter: None,
        }
    }

    /// Where a new group starts.
    #[must_use]
    pub fn start(mut self, start: Start) -> Self {
        self.start = start;
        self
    }

    /// The ack wait.
    #[must_use]
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// How many deliveries before a dead letter (at least 1).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The backoff between attempts.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The dead-letter topic.
    #[must_use]
    pub fn dead_letter(mut self, topic: impl Into<String>) -> Self {
        self.dead_letter = Some(topic.into());
        self
    }

    /// The dead-letter topic for `topic`.
    pub fn dead_letter_topic(&self, topic: &str) -> String {
        self.dead_letter
            .clone()
            .unwrap_or_else(|| format!("{topic}.dead"))
    }
}

/// One delivery as a backend hands it over: the event, which attempt this
/// is, and how to settle it.
pub struct Received {
    /// The event.
    pub event: Event,
    /// 1 for the first delivery, 2 for the next, …
    pub attempt: u32,
    /// Settles this delivery with the backend.
    pub settle: Arc<dyn Settle>,
}

impl fmt::Debug for Received {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Received")
            .field("event", &self.event)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// How a backend settles one delivery.
pub trait Settle: Send + Sync {
    /// Done: the event leaves the group.
    fn ack(&self) -> BoxFuture<'_, Result<(), EventsError>>;
    /// Deliver it again after `delay`, in its place (not at the end).
    fn nack(&self, delay: Duration) -> BoxFuture<'_, Result<(), EventsError>>;
    /// Still working: the ack wait starts again.
    fn in_progress(&self) -> BoxFuture<'_, Result<(), EventsError>>;
}

/// The deliveries a backend hands one member of a group.
pub type Receipts = BoxStream<'static, Result<Received, EventsError>>;

/// Why an events operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventsError {
    /// A bad topic, group or option (400).
    #[error("{0}")]
    Invalid(String),
    /// The backend cannot be reached (503).
    #[error("{0}")]
    Unavailable(String),
    /// The backend failed otherwise (500).
    #[error("{0}")]
    Backend(String),
}

impl From<EventsError> for Error {
    fn from(err: EventsError) -> Self {
        let code = match &err {
            EventsError::Invalid(_) => code::BAD_REQUEST,
            EventsError::Unavailable(_) => code::UNAVAILABLE,
            EventsError::Backend(_) => code::INTERNAL,
        };
        Error::new("", code, err.to_string()).with_source(err)
    }
}

/// Stores events and hands them to groups.
///
/// # Contract
/// - `publish` returns once the event is stored; an id seen within
///   [`DEDUP_WINDOW`] stores nothing and returns the first sequence with
///   `duplicate` set.
/// - Each group gets every event of the topic from its start on, each
///   event to one member at a time, in sequence order to each member,
///   until a member acks it. An event unacked within the ack wait, or
///   nacked, is delivered again with the attempt one higher; a nacked event
///   keeps its place.
/// - A group is durable: its position survives its members, and on the
///   servers, the process.
///
/// Retry limits and dead letters are not the backend's: [`Topics`] adds
/// them on top, the same for every backend.
pub trait Events: Send + Sync + fmt::Debug + 'static {
    /// The backend's name (`memory`, `nats`, …).
    fn name(&self) -> &'static str;

    /// Stores `event` in `topic`.
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        event: NewEvent,
    ) -> BoxFuture<'a, Result<Published, EventsError>>;

    /// The deliveries of `topic` to one member of `options.group`.
    fn consume<'a>(
        &'a self,
        topic: &'a str,
        options: &'a ConsumeOptions,
    ) -> BoxFuture<'a, Result<Receipts, EventsError>>;
}

/// Checks a topic: 1 to 200 bytes of letters, digits, `-` and `_`, in
/// dot-separated words (`orders.created`), so it means the same on every
/// backend.
pub(crate) fn check_topic(topic: &str) -> Result<(), EventsError> {
    let word = |w: &str| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    };
    if topic.len() > MAX_TOPIC_LEN || !topic.split('.').all(word) {
        return Err(EventsError::Invalid(format!(
            "invalid topic \"{topic}\": 1 to {MAX_TOPIC_LEN} bytes of letters, digits, - and _, \
             in words separated by single dots"
        )));
    }
    Ok(())
}

/// Checks a group name: 1 to 128 letters, digits and `. _ -`.
pub(crate) fn check_group(group: &str) -> Result<(), EventsError> {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if group.is_empty() || group.len() > 128 || !group.chars().all(valid) {
        return Err(EventsError::Invalid(format!(
            "invalid consumer group \"{group}\": 1 to 128 letters, digits or . _ -"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics() {
        for good in ["orders", "orders.created", "a-b_c.d1"] {
            assert!(check_topic(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "a..b",
            "a.",
            ".a",
            "a b",
            "a*",
            "a>",
            "ü",
            &"a".repeat(201),
        ] {
            assert!(check_topic(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff() {
        let b = Backoff::default();
        assert_eq!(b.delay(1), Duration::from_secs(1));
        assert_eq!(b.delay(3), Duration::from_secs(4));
        assert_eq!(b.delay(100), Duration::from_secs(60));
        assert_eq!(
            Backoff::fixed(Duration::from_millis(5)).delay(9),
            Duration::from_millis(5)
        );
    }
}
