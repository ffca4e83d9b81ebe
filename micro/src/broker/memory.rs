//! The in-process broker.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, join_all};

use super::{Broker, BrokerError, Handler, Message, SubscribeOptions, Subscription, check_topic};
use crate::Error;

/// A broker inside this process: for one process, tests and examples.
///
/// `publish` runs the chosen handlers concurrently and returns when all
/// have finished; their errors come back as [`BrokerError::Delivery`]. A
/// handler that panics counts as a 500, and the broker keeps working.
#[derive(Clone, Debug, Default)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// topic -> subscribers.
    topics: RwLock<HashMap<String, Vec<Sub>>>,
    next_id: AtomicU64,
    /// Turns for queue groups, so members share the load evenly.
    turn: AtomicUsize,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        f.debug_map()
            .entries(topics.iter().map(|(t, subs)| (t, subs.len())))
            .finish()
    }
}

#[derive(Clone)]
struct Sub {
    id: u64,
    queue: Option<String>,
    handler: Handler,
}

impl MemoryBroker {
    /// An empty broker.
    pub fn new() -> Self {
        Self::default()
    }

    /// The subscribers chosen for one message: every one without a queue,
    /// and one member of each queue group.
    fn targets(&self, topic: &str) -> Vec<Sub> {
        let topics = self.inner.topics.read().unwrap_or_else(|e| e.into_inner());
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
        let turn = self.inner.turn.fetch_add(1, Ordering::Relaxed);
        for members in groups.values() {
            chosen.push(members[turn % members.len()].clone());
        }
        chosen
    }
}

impl Broker for MemoryBroker {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn publish(&self, message: Message) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            check_topic(&message.topic)?;
            let targets = self.targets(&message.topic);
            let topic = &message.topic;
            let runs = targets.iter().map(|sub| {
                let run = (sub.handler)(message.clone());
                async move {
                    let outcome = AssertUnwindSafe(run).catch_unwind().await;
                    let result = outcome.unwrap_or_else(|_| {
                        Err(Error::internal(format!("subscriber of {topic} panicked")))
                    });
                    (sub.id, result)
                }
            });
            let failures: Vec<(String, Error)> = join_all(runs)
                .await
                .into_iter()
                .filter_map(|(id, r)| r.err().map(|e| (format!("subscriber {id}"), e)))
                .collect();
            if failures.is_empty() {
                Ok(())
            } else {
                Err(BrokerError::Delivery {
                    topic: message.topic.clone(),
                    failures,
                })
            }
        })
    }

    fn subscribe<'a>(
        &'a self,
        topic: &'a str,
        handler: Handler,
        options: SubscribeOptions,
    ) -> BoxFuture<'a, Result<Subscription, BrokerError>> {
        Box::pin(async move {
            check_topic(topic)?;
            let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
            self.inner
                .topics
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .entry(topic.to_owned())
                .or_default()
                .push(Sub {
                    id,
                    queue: options.queue.clone(),
                    handler,
                });
            let inner = self.inner.clone();
            let owned = topic.to_owned();
            Ok(Subscription::new(
                topic,
                options.queue,
                move || async move {
                    let mut topics = inner.topics.write().unwrap_or_else(|e| e.into_inner());
                    if let Some(subs) = topics.get_mut(&owned) {
                        subs.retain(|s| s.id != id);
                        if subs.is_empty() {
                            topics.remove(&owned);
                        }
                    }
                    Ok(())
                },
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;
    use crate::broker::handler;
    use crate::codec::ContentType;

    type Log = Arc<Mutex<Vec<(String, u32)>>>;

    fn recorder(log: &Log, name: &str) -> Handler {
        let (log, name) = (log.clone(), name.to_owned());
        handler(move |msg: Message| {
            let (log, name) = (log.clone(), name.clone());
            async move {
                let n: u32 = msg.decode()?;
                log.lock().unwrap().push((name, n));
                Ok(())
            }
        })
    }

    async fn publish_n(broker: &MemoryBroker, topic: &str, n: u32) {
        for i in 0..n {
            let msg = Message::encode(topic, &i, ContentType::Json).unwrap();
            broker.publish(msg).await.unwrap();
        }
    }

    #[tokio::test]
    async fn broadcast_and_queue_groups() {
        let broker = MemoryBroker::new();
        let log: Log = Arc::default();
        for (name, queue) in [
            ("a", None),
            ("b", None),
            ("w1", Some("workers")),
            ("w2", Some("workers")),
            ("audit", Some("audit")),
        ] {
            let opts = match queue {
                Some(q) => SubscribeOptions::queue(q),
                None => SubscribeOptions::default(),
            };
            broker
                .subscribe("t", recorder(&log, name), opts)
                .await
                .unwrap();
        }
        publish_n(&broker, "t", 100).await;
        let mut per: HashMap<String, Vec<u32>> = HashMap::new();
        for (name, n) in log.lock().unwrap().iter() {
            per.entry(name.clone()).or_default().push(*n);
        }
        assert_eq!(per["a"].len(), 100);
        assert_eq!(per["b"].len(), 100);
        assert_eq!(per["audit"].len(), 100);
        assert_eq!(per["w1"].len() + per["w2"].len(), 100);
        assert_eq!(per["w1"].len(), 50);
        let mut workers: Vec<u32> = per["w1"].iter().chain(&per["w2"]).copied().collect();
        workers.sort_unstable();
        assert_eq!(workers, (0..100).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn errors_and_panics_reach_the_publisher() {
        let broker = MemoryBroker::new();
        broker
            .subscribe(
                "t",
                handler(|_| async { Err(Error::conflict("already seen")) }),
                SubscribeOptions::default(),
            )
            .await
            .unwrap();
        let err = broker
            .publish(Message::encode("t", &1, ContentType::Json).unwrap())
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "delivering to topic \"t\": subscriber 0: 409 already seen"
        );
        assert_eq!(Error::from(err).code(), 409);

        let panicky = MemoryBroker::new();
        panicky
            .subscribe(
                "p",
                handler(|_| async { panic!("boom") }),
                SubscribeOptions::default(),
            )
            .await
            .unwrap();
        let err = panicky
            .publish(Message::encode("p", &1, ContentType::Json).unwrap())
            .await
            .unwrap_err();
        assert_eq!(Error::from(err).code(), 500);
    }

    #[tokio::test]
    async fn unsubscribed_handlers_receive_nothing() {
        let broker = MemoryBroker::new();
        let log: Log = Arc::default();
        let sub = broker
            .subscribe("t", recorder(&log, "a"), SubscribeOptions::default())
            .await
            .unwrap();
        publish_n(&broker, "t", 3).await;
        sub.unsubscribe().await.unwrap();
        publish_n(&broker, "t", 3).await;
        assert_eq!(log.lock().unwrap().len(), 3);
        // Publishing to a topic nobody follows is not an error.
        publish_n(&broker, "nobody", 1).await;
    }

    #[tokio::test]
    async fn bad_topics_are_refused() {
        let broker = MemoryBroker::new();
        let err = broker
            .subscribe(
                "",
                handler(|_| async { Ok(()) }),
                SubscribeOptions::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "invalid topic \"\"");
        assert!(
            broker
                .publish(Message::encode("a b", &1, ContentType::Json).unwrap())
                .await
                .is_err()
        );
    }
}
