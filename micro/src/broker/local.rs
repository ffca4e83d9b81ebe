//! Subscriptions held in this process: the table the memory and HTTP
//! brokers share.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use futures_util::FutureExt;
use futures_util::future::join_all;
use tokio::sync::watch;
use tracing::Instrument;

use super::{Message, MessageHandler, SubscribeOptions, Subscription};
use crate::{Error, Result};

/// Topic -> subscribers, with turns for queue groups.
pub(crate) struct Local {
    topics: RwLock<HashMap<String, Vec<Sub>>>,
    next_id: AtomicU64,
    /// Turns for queue groups, so members share the load evenly.
    turn: AtomicUsize,
    /// Counts changes to the table, for advertisements to follow.
    version: watch::Sender<u64>,
}

impl Default for Local {
    fn default() -> Self {
        Self {
            topics: RwLock::default(),
            next_id: AtomicU64::new(0),
            turn: AtomicUsize::new(0),
            version: watch::channel(0).0,
        }
    }
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        f.debug_map()
            .entries(topics.iter().map(|(t, subs)| (t, subs.len())))
            .finish()
    }
}

/// One local subscriber.
#[derive(Clone)]
pub(crate) struct Sub {
    pub(crate) id: u64,
    pub(crate) queue: Option<String>,
    pub(crate) handler: MessageHandler,
}

impl Local {
    /// Adds a subscriber; the subscription removes it.
    pub(crate) fn add(
        self: &Arc<Self>,
        topic: &str,
        handler: MessageHandler,
        options: SubscribeOptions,
    ) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(topic.to_owned())
            .or_default()
            .push(Sub {
                id,
                queue: options.queue.clone(),
                handler,
            });
        self.version.send_modify(|v| *v += 1);
        let local = self.clone();
        let owned = topic.to_owned();
        Subscription::new(topic, options.queue, move || async move {
            let mut topics = local.topics.write().unwrap_or_else(|e| e.into_inner());
            if let Some(subs) = topics.get_mut(&owned) {
                subs.retain(|s| s.id != id);
                if subs.is_empty() {
                    topics.remove(&owned);
                }
            }
            drop(topics);
            local.version.send_modify(|v| *v += 1);
            Ok(())
        })
    }

    /// The version of the table now.
    pub(crate) fn version(&self) -> u64 {
        *self.version.borrow()
    }

    /// Follows the table's version.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// The table as node metadata: `sub.<topic>` → its queue groups.
    pub(crate) fn advertised(&self) -> BTreeMap<String, String> {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        topics
            .iter()
            .map(|(topic, subs)| {
                (
                    super::metadata_key(topic),
                    super::metadata_value(subs.iter().map(|s| s.queue.as_deref())),
                )
            })
            .collect()
    }

    /// The next turn, for choosing among queue members.
    pub(crate) fn turn(&self) -> usize {
        self.turn.fetch_add(1, Ordering::Relaxed)
    }

    /// Every subscriber of `topic` without a queue, and one member of each
    /// queue group.
    pub(crate) fn fan_out(&self, topic: &str) -> Vec<Sub> {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        let Some(subs) = topics.get(topic) else {
            return Vec::new();
        };
        let mut chosen: Vec<Sub> = subs.iter().filter(|s| s.queue.is_none()).cloned().collect();
        let mut groups: HashMap<&str, Vec<&Sub>> = HashMap::new();
        for s in subs {
            if let Some(q) = &s.queue {
                groups.entry(q).or_default().push(s);
            }
        }
        let turn = self.turn();
        for members in groups.values() {
            chosen.push(members[turn % members.len()].clone());
        }
        chosen
    }

    /// The subscribers for one delivery: all without a queue, or one member
    /// of `queue`.
    pub(crate) fn for_delivery(&self, topic: &str, queue: Option<&str>) -> Vec<Sub> {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        let subs = topics.get(topic).map(Vec::as_slice).unwrap_or_default();
        match queue {
            None => subs.iter().filter(|s| s.queue.is_none()).cloned().collect(),
            Some(q) => {
                let members: Vec<&Sub> = subs
                    .iter()
                    .filter(|s| s.queue.as_deref() == Some(q))
                    .collect();
                if members.is_empty() {
                    return Vec::new();
                }
                vec![members[self.turn() % members.len()].clone()]
            }
        }
    }
}

/// Runs the subscribers on `message` concurrently; a panic counts as a 500
/// and leaves the broker working.
pub(crate) async fn run(subs: &[Sub], message: &Message) -> Vec<(u64, Result<()>)> {
    let topic = &message.topic;
    let runs = subs.iter().map(|sub| {
        // A span per delivery, in the publisher's trace (or a new one);
        // the handler's context continues it.
        let span = tracing::info_span!(
            "micro.message",
            topic = %topic,
            queue = sub.queue.as_deref().unwrap_or(""),
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        let trace = crate::trace::Trace::serving(message.metadata.as_headers()).in_span(&span);
        let mut message = message.clone();
        message.trace = Some(trace);
        let run = (sub.handler)(message).instrument(span);
        async move {
            let result = AssertUnwindSafe(run)
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    Err(Error::internal(format!("subscriber of {topic} panicked")))
                });
            (sub.id, result)
        }
    });
    join_all(runs).await
}
