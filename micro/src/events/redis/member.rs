//! One member of a consumer group on a Redis stream: its reads, its
//! claims of due redeliveries, and how each delivery is settled.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use redis::Value;
use redis::aio::ConnectionManager;
use tokio::time::Instant;

use super::{BATCH, CLAIM_BATCH, Inner, REAP_IDLE, millis, millis_of, sequence_of};
use crate::codec::ContentType;
use crate::events::{Event, EventsError, Received, Settle, Start};

/// What one member and its deliveries share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) inner: Arc<Inner>,
    pub(super) topic: String,
    pub(super) stream: String,
    pub(super) due: String,
    pub(super) group: String,
    /// This member's consumer name in the group.
    pub(super) name: String,
    pub(super) ack_wait: Duration,
    /// The earliest time one of this member's nacks is due, if sooner than
    /// its next look.
    pub(super) wake: Mutex<Option<Instant>>,
}

impl Shared {
    /// Runs [`SETTLE`] on delivery `id`, attempt `attempt`; false if it is
    /// no longer this member's.
    async fn restamp(
        &self,
        id: &str,
        attempt: u32,
        idle: Duration,
        long_delay: Duration,
        count: Option<u32>,
    ) -> Result<bool, EventsError> {
        let mut conn = self.inner.conn().await?;
        let count = count.map(|c| c.to_string()).unwrap_or_default();
        let done: i64 = (self.inner.settle.key(&self.stream).key(&self.due))
            .arg(&self.group)
            .arg(&self.name)
            .arg(id)
            .arg(attempt)
            .arg(millis(idle))
            .arg(millis(long_delay))
            .arg(count)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.inner.error(&e))?;
        Ok(done == 1)
    }

    /// An entry as a delivery of attempt `attempt`, read at `read_at`.
    fn buffered(
        self: &Arc<Self>,
        id: &[u8],
        fields: Value,
        attempt: u32,
        read_at: Instant,
    ) -> Option<Buffered> {
        let id = std::str::from_utf8(id).ok()?;
        let sequence = sequence_of(id)?;
        let ms = millis_of(sequence);
        let mut event = Event {
            id: String::new(),
            topic: self.topic.clone(),
            sequence,
            timestamp: UNIX_EPOCH + Duration::from_millis(ms),
            metadata: BTreeMap::new(),
            content_type: ContentType::default(),
            payload: bytes::Bytes::new(),
        };
        let Value::Array(fields) = fields else {
            return None;
        };
        let mut fields = fields.into_iter();
        while let (Some(Value::BulkString(name)), Some(Value::BulkString(value))) =
            (fields.next(), fields.next())
        {
            match name.as_slice() {
                b"i" => event.id = String::from_utf8(value).ok()?,
                b"c" => {
                    let ct = std::str::from_utf8(&value).ok()?;
                    event.content_type = ContentType::from_header(ct).unwrap_or_default();
                }
                b"p" => event.payload = value.into(),
                other => {
                    if let Some(key) = other.strip_prefix(b"m.") {
                        event.metadata.insert(
                            String::from_utf8_lossy(key).into_owned(),
                            String::from_utf8(value).ok()?,
                        );
                    }
                }
            }
        }
        let received = Received {
            event,
            attempt,
            settle: Arc::new(RedisSettle {
                shared: self.clone(),
                id: id.to_owned(),
                attempt,
            }),
        };
        Some(Buffered {
            received,
            id: id.to_owned(),
            read_at,
        })
    }
}

/// A delivery read but not handed over yet.
struct Buffered {
    received: Received,
    /// Its entry id.
    id: String,
    read_at: Instant,
}

/// One member of a group: its reads, its claims, and what it has read but
/// not handed over yet.
pub(super) struct Member {
    shared: Arc<Shared>,
    /// Where the group starts, should it have to be made again.
    start: Start,
    reader: ConnectionManager,
    poll: Duration,
    buffer: VecDeque<Buffered>,
    next_claim: Instant,
    /// The last call failed: wait before the next.
    failed: bool,
}

impl Member {
    /// A member of `shared`'s group that reads over `reader`, looking for
    /// due redeliveries every `poll`.
    pub(super) fn new(
        shared: Arc<Shared>,
        start: Start,
        reader: ConnectionManager,
        poll: Duration,
    ) -> Self {
        Self {
            shared,
            start,
            reader,
            poll,
            buffer: VecDeque::new(),
            next_claim: Instant::now(),
            failed: false,
        }
    }

    pub(super) async fn next(&mut self) -> Result<Received, EventsError> {
        if std::mem::take(&mut self.failed) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let result = self.next_inner().await;
        self.failed = result.is_err();
        result
    }

    async fn next_inner(&mut self) -> Result<Received, EventsError> {
        loop {
            while let Some(b) = self.buffer.pop_front() {
                // Held here long: restart its ack wait, unless another
                // member has taken it over meanwhile.
                if b.read_at.elapsed() > self.shared.ack_wait / 2 {
                    let (attempt, zero) = (b.received.attempt, Duration::ZERO);
                    if !(self.shared.restamp(&b.id, attempt, zero, zero, None)).await? {
                        continue;
                    }
                }
                return Ok(b.received);
            }
            let now = Instant::now();
            let woken = {
                let mut wake = self.shared.wake.lock().unwrap_or_else(|e| e.into_inner());
                match *wake {
                    Some(at) if at <= now => wake.take().is_some(),
                    _ => false,
                }
            };
            if woken || now >= self.next_claim {
                self.next_claim = now + self.poll;
                self.claim().await?;
                if !self.buffer.is_empty() {
                    continue;
                }
            }
            self.read().await?;
        }
    }

    /// Takes over the group's due redeliveries.
    async fn claim(&mut self) -> Result<(), EventsError> {
        let shared = &self.shared;
        let mut conn = shared.inner.conn().await?;
        let reply: Value = (shared.inner.claim.key(&shared.stream).key(&shared.due))
            .arg(&shared.group)
            .arg(&shared.name)
            .arg(millis(shared.ack_wait))
            .arg(CLAIM_BATCH)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| shared.inner.error(&e))?;
        let now = Instant::now();
        for entry in array(reply) {
            let mut parts = array(entry).into_iter();
            if let (Some(Value::BulkString(id)), Some(fields), Some(Value::Int(attempt))) =
                (parts.next(), parts.next(), parts.next())
            {
                let attempt = u32::try_from(attempt).unwrap_or(u32::MAX);
                if let Some(b) = shared.buffered(&id, fields, attempt, now) {
                    self.buffer.push_back(b);
                }
            }
        }
        Ok(())
    }

    /// Reads new events, waiting up to the poll interval (less if a nack
    /// is due sooner).
    async fn read(&mut self) -> Result<(), EventsError> {
        let shared = self.shared.clone();
        let now = Instant::now();
        let wake = *shared.wake.lock().unwrap_or_else(|e| e.into_inner());
        let until = wake.map_or(self.next_claim, |w| w.min(self.next_claim));
        // BLOCK 0 would wait for ever.
        let block = millis(until.saturating_duration_since(now)).max(1);
        let reply: Result<Value, _> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&shared.group)
            .arg(&shared.name)
            .arg("COUNT")
            .arg(BATCH)
            .arg("BLOCK")
            .arg(block)
            .arg("STREAMS")
            .arg(&shared.stream)
            .arg(">")
            .query_async(&mut self.reader)
            .await;
        let reply = match reply {
            Ok(reply) => reply,
            // The group is gone (the stream deleted, say): make it again.
            Err(e) if e.code() == Some("NOGROUP") => {
                let inner = &shared.inner;
                return inner
                    .make_group(&shared.stream, &shared.group, self.start)
                    .await;
            }
            Err(e) => return Err(shared.inner.error(&e)),
        };
        let now = Instant::now();
        // One stream asked for: its entries are the first reply's second
        // part (an array in RESP2, a map in RESP3).
        let entries = match reply {
            Value::Array(streams) => streams
                .into_iter()
                .next()
                .and_then(|s| array(s).into_iter().nth(1)),
            Value::Map(streams) => streams.into_iter().next().map(|(_, entries)| entries),
            _ => None,
        };
        for entry in entries.map(array).unwrap_or_default() {
            let mut parts = array(entry).into_iter();
            if let (Some(Value::BulkString(id)), Some(fields)) = (parts.next(), parts.next())
                && let Some(b) = shared.buffered(&id, fields, 1, now)
            {
                self.buffer.push_back(b);
            }
        }
        Ok(())
    }
}

impl Drop for Member {
    /// Hands what it read but did not hand over back to the group at once
    /// (with its delivery count as it was), and leaves the group if it
    /// holds nothing else.
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = self.shared.clone();
        let unread: Vec<(String, u32)> = (self.buffer.drain(..))
            .map(|b| (b.id, b.received.attempt))
            .collect();
        runtime.spawn(async move {
            for (id, attempt) in unread {
                let (idle, zero) = (shared.ack_wait, Duration::ZERO);
                let count = Some(attempt - 1);
                if shared
                    .restamp(&id, attempt, idle, zero, count)
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if let Ok(mut conn) = shared.inner.conn().await {
                let _: Result<i64, _> = (shared.inner.reap.key(&shared.stream))
                    .arg(&shared.group)
                    .arg(millis(REAP_IDLE))
                    .arg(&shared.name)
                    .invoke_async(&mut conn)
                    .await;
            }
        });
    }
}

fn array(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        _ => Vec::new(),
    }
}

/// Settles one delivery: an ack is `XACK`; a nack or a progress report
/// restamps the entry, if it is still this member's.
struct RedisSettle {
    shared: Arc<Shared>,
    id: String,
    attempt: u32,
}

impl Settle for RedisSettle {
    fn ack(&self) -> BoxFuture<'_, Result<(), EventsError>> {
        Box::pin(async move {
            let shared = &self.shared;
            let mut conn = shared.inner.conn().await?;
            let _: i64 = redis::cmd("XACK")
                .arg(&shared.stream)
                .arg(&shared.group)
                .arg(&self.id)
                .query_async(&mut conn)
                .await
                .map_err(|e| shared.inner.error(&e))?;
            Ok(())
        })
    }

    fn nack(&self, delay: Duration) -> BoxFuture<'_, Result<(), EventsError>> {
        Box::pin(async move {
            let shared = &self.shared;
            // Due after `delay`: an idle time that reaches the ack wait
            // then, or, for a delay longer than that, a due time of its own.
            let (idle, long) = match shared.ack_wait.checked_sub(delay) {
                Some(idle) => (idle, Duration::ZERO),
                None => (Duration::ZERO, delay.max(Duration::from_millis(1))),
            };
            (shared.restamp(&self.id, self.attempt, idle, long, None)).await?;
            let due = Instant::now() + delay;
            let mut wake = shared.wake.lock().unwrap_or_else(|e| e.into_inner());
            if wake.is_none_or(|w| due < w) {
                *wake = Some(due);
            }
            Ok(())
        })
    }

    fn in_progress(&self) -> BoxFuture<'_, Result<(), EventsError>> {
        Box::pin(async move {
            let zero = Duration::ZERO;
            (self
                .shared
                .restamp(&self.id, self.attempt, zero, zero, None))
            .await?;
            Ok(())
        })
    }
}
