//! The HTTP broker: events go straight to the subscribing nodes.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::{BoxFuture, join_all};

use super::local::{Local, run};
use super::{
    Broker, BrokerError, Handler, Message, Published, SubscribeOptions, Subscription, check_topic,
    metadata_key,
};
use crate::registry::{Node, Registry};
use crate::{Client, Error, Result};

/// Go Micro's default broker: no broker process at all. Each event is
/// POSTed with `Micro-Topic` to the subscribing nodes, on their own service
/// port, found through the registry.
///
/// A process advertises its subscriptions in its registration (node
/// metadata `sub.<topic>`, listing queue groups, `*` for none), so a
/// publisher finds them the way a client finds a service. For each queue
/// group one member receives an event (another is tried if it cannot be
/// reached); every subscriber without a queue receives it. `publish`
/// returns once every chosen node has answered, and reports the ones that
/// failed.
///
/// The node's server hands arriving events to [`Broker::receive`], so the
/// broker must be the service's broker (`Service::broker`, or the default).
#[derive(Clone, Debug)]
pub struct HttpBroker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Arc<dyn Registry>,
    /// Delivers events; it publishes through nothing itself.
    client: Client,
    local: Arc<Local>,
}

impl HttpBroker {
    /// A broker that finds subscribers in `registry`.
    pub fn new(registry: Arc<dyn Registry>) -> Self {
        let client = Client::builder()
            .registry(registry.clone())
            .broker(Arc::new(super::MemoryBroker::new()))
            .build();
        Self {
            inner: Arc::new(Inner {
                registry,
                client,
                local: Arc::default(),
            }),
        }
    }

    /// The nodes subscribed to `topic`: those without a queue, and the
    /// members of each queue group.
    async fn subscribers(
        &self,
        topic: &str,
    ) -> Result<(Vec<Node>, HashMap<String, Vec<Node>>), BrokerError> {
        let key = metadata_key(topic);
        let services = self
            .inner
            .registry
            .list_services()
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        let mut broadcast = Vec::new();
        let mut groups: HashMap<String, Vec<Node>> = HashMap::new();
        for node in services.into_iter().flat_map(|s| s.nodes) {
            let Some(value) = node.metadata.get(&key) else {
                continue;
            };
            for entry in value.split(',').filter(|e| !e.is_empty()) {
                if entry == "*" {
                    broadcast.push(node.clone());
                } else {
                    groups
                        .entry(entry.to_owned())
                        .or_default()
                        .push(node.clone());
                }
            }
        }
        Ok((broadcast, groups))
    }

    /// Delivers to one member of a queue group, trying the next one when a
    /// member cannot take it (unreachable, stopping, or no longer
    /// subscribed).
    async fn deliver_to_group(
        &self,
        message: &Message,
        queue: &str,
        members: &[Node],
    ) -> Result<(), (String, Error)> {
        let start = self.inner.local.turn();
        let mut last = None;
        for i in 0..members.len() {
            let node = &members[(start + i) % members.len()];
            match self
                .inner
                .client
                .deliver(&node.address, message, Some(queue))
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if matches!(e.code(), 404 | 408 | 502 | 503 | 504) => {
                    last = Some((node.address.clone(), e))
                }
                Err(e) => return Err((node.address.clone(), e)),
            }
        }
        Err(last.unwrap_or_else(|| (queue.to_owned(), Error::unavailable("no member reachable"))))
    }
}

impl Broker for HttpBroker {
    fn name(&self) -> &'static str {
        "http"
    }

    fn publish(&self, message: Message) -> BoxFuture<'_, Result<Published, BrokerError>> {
        Box::pin(async move {
            check_topic(&message.topic)?;
            let (broadcast, groups) = self.subscribers(&message.topic).await?;
            let message = &message;
            let to_all = broadcast.iter().map(|node| async move {
                match self
                    .inner
                    .client
                    .deliver(&node.address, message, None)
                    .await
                {
                    Ok(()) => Ok(true),
                    // A node that stopped or unsubscribed meanwhile is not
                    // a failed delivery: it no longer wants the event.
                    Err(e) if e.code() == 404 => Ok(false),
                    Err(e) => Err((node.address.clone(), e)),
                }
            });
            let to_groups = groups.iter().map(|(queue, members)| async move {
                self.deliver_to_group(message, queue, members)
                    .await
                    .map(|()| true)
            });
            let (all, grouped) =
                futures_util::future::join(join_all(to_all), join_all(to_groups)).await;
            let mut delivered = 0;
            let mut failures = Vec::new();
            for result in all.into_iter().chain(grouped) {
                match result {
                    Ok(took) => delivered += usize::from(took),
                    Err(failure) => failures.push(failure),
                }
            }
            BrokerError::check_delivery(message, delivered, failures)
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
            Ok(self.inner.local.add(topic, handler, options))
        })
    }

    fn receive(&self, message: Message, queue: Option<String>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let chosen = self
                .inner
                .local
                .for_delivery(&message.topic, queue.as_deref());
            if chosen.is_empty() {
                return Err(Error::not_found(match &queue {
                    Some(q) => format!(
                        "no subscriber of topic \"{}\" in queue \"{q}\" here",
                        message.topic
                    ),
                    None => format!("no subscriber of topic \"{}\" here", message.topic),
                }));
            }
            for (_, result) in run(&chosen, &message).await {
                result?;
            }
            Ok(())
        })
    }
}
