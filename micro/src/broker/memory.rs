//! The in-process broker.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::local::{Local, run};
use super::{
    Broker, BrokerError, Message, MessageHandler, Published, SubscribeOptions, Subscription,
    check_topic,
};
use crate::Error;

/// A broker inside this process: for one process, tests and examples.
///
/// `publish` runs the chosen handlers concurrently and returns when all
/// have finished; their errors come back as [`BrokerError::Delivery`]. A
/// handler that panics counts as a 500, and the broker keeps working.
#[derive(Clone, Debug, Default)]
pub struct MemoryBroker {
    local: Arc<Local>,
}

impl MemoryBroker {
    /// An empty broker.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Broker for MemoryBroker {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn publish(&self, message: Message) -> BoxFuture<'_, Result<Published, BrokerError>> {
        Box::pin(async move {
            check_topic(&message.topic)?;
            let targets = self.local.fan_out(&message.topic);
            let failures: Vec<(String, Error)> = run(&targets, &message)
                .await
                .into_iter()
                .filter_map(|(id, r)| r.err().map(|e| (format!("subscriber {id}"), e)))
                .collect();
            let delivered = targets.len() - failures.len();
            BrokerError::check_delivery(&message, delivered, failures)
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
            Ok(self.local.add(topic, handler, options))
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

    fn recorder(log: &Log, name: &str) -> MessageHandler {
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
        // Two without a queue, and one for each of the two groups.
        let msg = Message::encode("t", &1000, ContentType::Json).unwrap();
        let published = broker.publish(msg.clone()).await.unwrap();
        assert_eq!(published, Published::new(msg.id, Some(4)));
        log.lock().unwrap().clear();
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
        // Publishing to a topic nobody follows is not an error, and says
        // that nobody took it.
        let msg = Message::encode("nobody", &1, ContentType::Json).unwrap();
        assert_eq!(broker.publish(msg).await.unwrap().delivered, Some(0));
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
