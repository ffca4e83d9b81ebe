//! The HTTP broker: events go straight to the subscribing nodes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Request};

use futures_util::future::{BoxFuture, join_all};

use super::advert::Adverts;
use super::local::{Local, run};
use super::{
    Broker, BrokerError, Message, MessageHandler, Published, SubscribeOptions, Subscription,
    check_topic, metadata_key,
};
use crate::code;
use crate::registry::{Node, Registry};
use crate::transport::{Failure, Stack, USER_AGENT_VALUE, reply_error};
use crate::wire::{MICRO_ID, MICRO_QUEUE, MICRO_TOPIC};
use crate::{Error, Result};

/// How long one delivery may take: sending the event and the subscriber's
/// handlers running it.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest reply a subscriber may send (it sends an empty one, or the
/// error JSON).
const MAX_REPLY: usize = 64 * 1024;

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

struct Inner {
    registry: Arc<dyn Registry>,
    /// Sends the events.
    transport: Stack,
    local: Arc<Local>,
    adverts: Adverts,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpBroker")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl HttpBroker {
    /// A broker that finds subscribers in `registry`.
    pub fn new(registry: Arc<dyn Registry>) -> Self {
        Self {
            inner: Arc::new(Inner {
                registry,
                transport: Stack::direct(),
                local: Arc::default(),
                adverts: Adverts::default(),
            }),
        }
    }

    /// Delivers an event to the node at `address` (docs/wire.md, "Events
    /// over HTTP"): `POST /` with `Micro-Topic`, and `Micro-Queue` when it
    /// is for a queue group.
    async fn deliver(
        &self,
        address: &str,
        message: &Message,
        queue: Option<&str>,
    ) -> Result<(), Error> {
        let who = format!("subscriber at {address}");
        let uri = format!("http://{address}/");
        let mut parts = Request::post(uri.as_str())
            .body(())
            .map_err(|e| Error::bad_request(format!("invalid node address \"{address}\": {e}")))?
            .into_parts()
            .0;
        let headers = &mut parts.headers;
        message.metadata.write_headers(headers);
        let value = |v: &str| {
            HeaderValue::from_str(v)
                .map_err(|_| Error::bad_request(format!("invalid header value \"{v}\"")))
        };
        headers.insert(CONTENT_TYPE, message.content_type.header_value());
        headers.insert(USER_AGENT, USER_AGENT_VALUE.clone());
        headers.insert(MICRO_TOPIC.clone(), value(&message.topic)?);
        headers.insert(MICRO_ID.clone(), value(&message.id)?);
        // The publisher's trace, which metadata copying leaves to calls.
        if let Some(tp) = message.metadata.get("traceparent") {
            headers.insert(crate::trace::TRACEPARENT.clone(), value(tp)?);
        }
        if let Some(queue) = queue {
            headers.insert(MICRO_QUEUE.clone(), value(queue)?);
        }
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        let exchange = self.inner.transport.exchange(
            parts,
            message.body.clone(),
            MAX_REPLY,
            "subscriber",
            address,
        );
        let (parts, bytes) = match tokio::time::timeout_at(deadline.into(), exchange).await {
            Ok(result) => result.map_err(|e: Failure| e.into_error().or_id(&who))?,
            Err(_) => {
                return Err(Error::timeout(format!(
                    "delivering to {who} took longer than {DELIVERY_TIMEOUT:?}"
                )));
            }
        };
        if parts.status.is_success() {
            return Ok(());
        }
        Err(reply_error(&parts, &bytes, "subscriber", address).or_id(&who))
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
            match self.deliver(&node.address, message, Some(queue)).await {
                Ok(()) => return Ok(()),
                Err(e)
                    if e.is_node_failure()
                        || matches!(e.code(), code::NOT_FOUND | code::TIMEOUT) =>
                {
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
                match self.deliver(&node.address, message, None).await {
                    Ok(()) => Ok(true),
                    // A node that stopped or unsubscribed meanwhile is not
                    // a failed delivery: it no longer wants the event.
                    Err(e) if e.code() == code::NOT_FOUND => Ok(false),
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
        handler: MessageHandler,
        options: SubscribeOptions,
    ) -> BoxFuture<'a, Result<Subscription, BrokerError>> {
        Box::pin(async move {
            check_topic(topic)?;
            let subscription = self.inner.local.add(topic, handler, options);
            // Publishers find subscribers in the registry: return once the
            // running service has registered this one.
            let version = self.inner.local.version();
            if !self.inner.adverts.wait_registered(version).await {
                let _ = subscription.unsubscribe().await;
                return Err(BrokerError::Unavailable(format!(
                    "subscribing to \"{topic}\": the service did not register the \
                     subscription within {:?}, so publishers could not find it",
                    super::advert::REGISTER_WAIT
                )));
            }
            Ok(subscription)
        })
    }

    fn advertisement(&self) -> Option<super::Advertisement> {
        Some(self.inner.adverts.advertise(&self.inner.local))
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
