//! The in-process events backend: a log per topic, a cursor and the
//! pending deliveries per group.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{
    ConsumeOptions, DEDUP_WINDOW, Event, Events, EventsError, NewEvent, Published, Receipts,
    Received, Settle, Start,
};

/// Events kept in this process (the default): for one process and for
/// tests. Clones share the events.
#[derive(Clone, Debug, Default)]
pub struct MemoryEvents {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    topics: Mutex<HashMap<String, Log>>,
    /// Told of every publish and nack, so that waiting members look again.
    changed: Notify,
}

#[derive(Debug, Default)]
struct Log {
    events: Vec<Event>,
    /// Publishers' ids within the dedup window, oldest first.
    ids: HashMap<String, u64>,
    seen: VecDeque<(Instant, String)>,
    groups: HashMap<String, Group>,
}

#[derive(Debug)]
struct Group {
    /// The index of the next event never delivered.
    next: usize,
    /// Delivered or nacked, not acked: by sequence.
    pending: BTreeMap<u64, Pending>,
    /// Numbers the deliveries, so that a stale one cannot settle a newer.
    deliveries: u64,
}

#[derive(Debug)]
struct Pending {
    attempt: u32,
    /// When it is due again: the ack wait's end, or the nack's delay.
    due: Instant,
    delivery: u64,
}

impl MemoryEvents {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    fn topics(&self) -> MutexGuard<'_, HashMap<String, Log>> {
        self.inner.topics.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Log {
    fn start(&self, start: Start) -> usize {
        match start {
            Start::New => self.events.len(),
            Start::Beginning => 0,
            Start::Sequence(s) => usize::try_from(s.saturating_sub(1))
                .unwrap_or(usize::MAX)
                .min(self.events.len()),
            Start::Time(t) => self.events.partition_point(|e| e.timestamp < t),
        }
    }
}

impl Events for MemoryEvents {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn publish<'a>(
        &'a self,
        topic: &'a str,
        event: NewEvent,
    ) -> BoxFuture<'a, Result<Published, EventsError>> {
        let published = {
            let mut topics = self.topics();
            let log = topics.entry(topic.to_owned()).or_default();
            let now = Instant::now();
            while let Some((at, _)) = log.seen.front() {
                if now.duration_since(*at) < DEDUP_WINDOW {
                    break;
                }
                if let Some((_, id)) = log.seen.pop_front() {
                    log.ids.remove(&id);
                }
            }
            let id = event.id.unwrap_or_else(crate::wire::new_id);
            match log.ids.get(&id) {
                Some(&sequence) => Published {
                    id,
                    sequence,
                    duplicate: true,
                },
                None => {
                    let sequence = log.events.len() as u64 + 1;
                    log.ids.insert(id.clone(), sequence);
                    log.seen.push_back((now, id.clone()));
                    log.events.push(Event {
                        id: id.clone(),
                        topic: topic.to_owned(),
                        sequence,
                        timestamp: SystemTime::now(),
                        metadata: event.metadata,
                        content_type: event.content_type,
                        payload: event.payload,
                    });
                    Published {
                        id,
                        sequence,
                        duplicate: false,
                    }
                }
            }
        };
        self.inner.changed.notify_waiters();
        Box::pin(std::future::ready(Ok(published)))
    }

    fn consume<'a>(
        &'a self,
        topic: &'a str,
        options: &'a ConsumeOptions,
    ) -> BoxFuture<'a, Result<Receipts, EventsError>> {
        {
            let mut topics = self.topics();
            let log = topics.entry(topic.to_owned()).or_default();
            if !log.groups.contains_key(&options.group) {
                let next = log.start(options.start);
                log.groups.insert(
                    options.group.clone(),
                    Group {
                        next,
                        pending: BTreeMap::new(),
                        deliveries: 0,
                    },
                );
            }
        }
        let member = Member {
            inner: self.inner.clone(),
            topic: topic.to_owned(),
            group: options.group.clone(),
            ack_wait: options.ack_wait,
        };
        let receipts = futures_util::stream::unfold(member, |member| async move {
            let received = member.next().await;
            Some((Ok(received), member))
        });
        Box::pin(std::future::ready(Ok(receipts.boxed())))
    }
}

/// One member of a group, pulling its next delivery.
#[derive(Clone, Debug)]
struct Member {
    inner: Arc<Inner>,
    topic: String,
    group: String,
    ack_wait: Duration,
}

impl Member {
    /// The next delivery: an event due again (in sequence order), else the
    /// next new one; waits for either.
    async fn next(&self) -> Received {
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let wait = match self.take() {
                Ok(received) => return received,
                Err(wait) => wait,
            };
            match wait {
                Some(due) => {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(due) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// A delivery now, or when to look again (`None`: at the next change).
    fn take(&self) -> Result<Received, Option<Instant>> {
        let mut topics = self.inner.topics.lock().unwrap_or_else(|e| e.into_inner());
        let Some(log) = topics.get_mut(&self.topic) else {
            return Err(None);
        };
        let Some(group) = log.groups.get_mut(&self.group) else {
            return Err(None);
        };
        let now = Instant::now();
        let due = group
            .pending
            .iter()
            .find(|(_, p)| p.due <= now)
            .map(|(&seq, _)| seq);
        let (sequence, attempt) = match due {
            Some(seq) => (seq, group.pending[&seq].attempt + 1),
            None if group.next < log.events.len() => {
                group.next += 1;
                (log.events[group.next - 1].sequence, 1)
            }
            None => return Err(group.pending.values().map(|p| p.due).min()),
        };
        group.deliveries += 1;
        let delivery = group.deliveries;
        group.pending.insert(
            sequence,
            Pending {
                attempt,
                due: now + self.ack_wait,
                delivery,
            },
        );
        let index = usize::try_from(sequence - 1).unwrap_or(usize::MAX);
        Ok(Received {
            event: log.events[index].clone(),
            attempt,
            settle: Arc::new(MemorySettle {
                member: self.clone(),
                sequence,
                delivery,
            }),
        })
    }
}

struct MemorySettle {
    member: Member,
    sequence: u64,
    delivery: u64,
}

impl MemorySettle {
    /// Applies `f` to the pending entry if it is still this delivery's.
    fn with_pending(&self, f: impl FnOnce(&mut BTreeMap<u64, Pending>)) {
        let mut topics = (self.member.inner.topics.lock()).unwrap_or_else(|e| e.into_inner());
        let pending = topics
            .get_mut(&self.member.topic)
            .and_then(|log| log.groups.get_mut(&self.member.group))
            .map(|g| &mut g.pending);
        if let Some(pending) = pending
            && pending
                .get(&self.sequence)
                .is_some_and(|p| p.delivery == self.delivery)
        {
            f(pending);
        }
    }
}

impl Settle for MemorySettle {
    fn ack(&self) -> BoxFuture<'_, Result<(), EventsError>> {
        self.with_pending(|pending| {
            pending.remove(&self.sequence);
        });
        Box::pin(std::future::ready(Ok(())))
    }

    fn nack(&self, delay: Duration) -> BoxFuture<'_, Result<(), EventsError>> {
        self.with_pending(|pending| {
            if let Some(p) = pending.get_mut(&self.sequence) {
                p.due = Instant::now() + delay;
            }
        });
        self.member.inner.changed.notify_waiters();
        Box::pin(std::future::ready(Ok(())))
    }

    fn in_progress(&self) -> BoxFuture<'_, Result<(), EventsError>> {
        let wait = self.member.ack_wait;
        self.with_pending(|pending| {
            if let Some(p) = pending.get_mut(&self.sequence) {
                p.due = Instant::now() + wait;
            }
        });
        Box::pin(std::future::ready(Ok(())))
    }
}
