//! The MQTT broker (MQTT 5, on rumqttc).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, Publish, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use tokio::sync::{mpsc, oneshot};

use super::{
    Broker, BrokerError, Message, MessageHandler, Published, SubscribeOptions, Subscription,
    check_topic,
};
use crate::codec::ContentType;
use crate::metadata::Metadata;

/// The server an MQTT broker uses when given none.
pub(crate) const MQTT_DEFAULT_URL: &str = "mqtt://127.0.0.1:1883";

/// How long a publish waits for the broker's acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Publishes in flight at once, below any broker's receive maximum, so
/// that packet ids are never reused while in flight.
const IN_FLIGHT: usize = 16;

/// The user property that carries a message's id.
const ID_PROPERTY: &str = "micro-id";

/// Pub/sub through an MQTT 5 broker (cargo feature `mqtt`): Mosquitto,
/// EMQX, HiveMQ, ….
///
/// - A topic is an MQTT topic name with its dots as slashes:
///   `orders.placed` is `orders/placed` on the broker, and a message that
///   arrives on `orders/placed` has the topic `orders.placed`.
/// - A queue group is an MQTT 5 shared subscription,
///   `$share/<group>/<topic>`: each message reaches one member.
/// - Messages go at QoS 1; the id travels as the user property
///   `micro-id`, the codec as the content type, the metadata as user
///   properties, so any MQTT 5 client reads and writes micro events.
/// - A publish returns once the broker acknowledged it (`PUBACK`); a
///   message no subscriber takes is `Ok` with [`Published::delivered`]
///   `Some(0)` where the broker says so. One the broker refuses, or that is
///   not acknowledged within 10 s (the connection dropped), is an error
///   that says it may not have been delivered.
/// - A message is acknowledged once its handler returned; MQTT has no
///   negative acknowledgement, so a handler's error is logged.
/// - The connection reconnects by itself (rumqttc), with a backoff up to
///   2 s, and subscribes again to everything subscribed.
#[derive(Clone, Debug)]
pub struct MqttBroker {
    connection: Arc<MqttConnection>,
}

/// One MQTT connection (per URL) and the task that drives it.
pub(crate) struct MqttConnection {
    url: String,
    started: tokio::sync::OnceCell<Result<Driver, String>>,
}

impl std::fmt::Debug for MqttConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConnection")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The client and what the driving task shares with publishers and
/// subscribers.
#[derive(Clone)]
struct Driver {
    client: AsyncClient,
    shared: Arc<Shared>,
    /// Bounds the publishes in flight.
    in_flight: Arc<tokio::sync::Semaphore>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Waiters of publishes handed to the client, in order, not yet sent.
    queued: VecDeque<oneshot::Sender<Result<Option<usize>, String>>>,
    /// Waiters of publishes sent, by packet id, not yet acknowledged.
    sent: HashMap<u16, oneshot::Sender<Result<Option<usize>, String>>>,
    /// Waiters of subscribes, in order, then by packet id.
    subscribing: VecDeque<oneshot::Sender<Result<(), String>>>,
    subscribed_sent: HashMap<u16, oneshot::Sender<Result<(), String>>>,
    /// What this connection subscribed to, by MQTT filter (with
    /// `$share/<group>/` for a group).
    filters: HashMap<String, Filter>,
    next_id: usize,
}

/// One filter subscribed on the broker, and the subscriptions reading it.
struct Filter {
    /// The subscription identifier the broker puts on what it delivers.
    id: usize,
    /// The topic filter without the share prefix.
    pattern: String,
    /// A group: each message goes to one route; else to every route.
    shared: bool,
    routes: Vec<Route>,
    /// The next route of a group to take a message.
    turn: usize,
}

struct Route {
    id: usize,
    deliver: mpsc::UnboundedSender<(Arc<Acked>, Message)>,
}

/// A delivery acknowledged to the broker once every handler it went to
/// has returned (when the last holder drops it).
struct Acked {
    client: AsyncClient,
    publish: Option<Publish>,
}

impl Drop for Acked {
    fn drop(&mut self) {
        if let Some(publish) = self.publish.take() {
            let _ = self.client.try_ack(&publish);
        }
    }
}

impl State {
    /// The routes a delivery with `ids` (its subscription identifiers) on
    /// `topic` goes to: every route of a plain filter, one of a group's.
    fn routes_for(
        &mut self,
        ids: &[usize],
        topic: &str,
    ) -> Vec<mpsc::UnboundedSender<(Arc<Acked>, Message)>> {
        let mut out = Vec::new();
        for filter in self.filters.values_mut() {
            let hit = if ids.is_empty() {
                matches(&filter.pattern, topic)
            } else {
                ids.contains(&filter.id)
            };
            if !hit || filter.routes.is_empty() {
                continue;
            }
            if filter.shared {
                filter.turn = (filter.turn + 1) % filter.routes.len();
                out.push(filter.routes[filter.turn].deliver.clone());
            } else {
                out.extend(filter.routes.iter().map(|r| r.deliver.clone()));
            }
        }
        out
    }
}

/// `orders.placed` as MQTT's `orders/placed`.
fn to_mqtt(topic: &str) -> String {
    topic.replace('.', "/")
}

/// MQTT's `orders/placed` as micro's `orders.placed`.
fn from_mqtt(topic: &[u8]) -> String {
    String::from_utf8_lossy(topic).replace('/', ".")
}

/// Whether the MQTT topic filter `filter` matches `topic`.
fn matches(filter: &str, topic: &str) -> bool {
    let mut filter = filter.split('/');
    let mut topic = topic.split('/');
    loop {
        match (filter.next(), topic.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

impl MqttConnection {
    pub(crate) fn new(url: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            url: url.into(),
            started: tokio::sync::OnceCell::new(),
        })
    }

    /// The client, its driving task started on first use.
    async fn driver(&self) -> Result<Driver, BrokerError> {
        let started = self.started.get_or_init(|| async { self.start() }).await;
        started.clone().map_err(BrokerError::Unavailable)
    }

    fn start(&self) -> Result<Driver, String> {
        let mut options = options(&self.url)?;
        options
            .set_keep_alive(Duration::from_secs(15))
            .set_clean_start(false)
            .set_session_expiry_interval(Some(3600))
            .set_manual_acks(true);
        let (client, events) = AsyncClient::new(options, 1024);
        let shared = Arc::new(Shared::default());
        tokio::spawn(drive(
            events,
            client.clone(),
            shared.clone(),
            self.url.clone(),
        ));
        Ok(Driver {
            client,
            shared,
            in_flight: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT)),
        })
    }
}

/// The client options of `url`: `mqtt://[user:password@]host[:port]`
/// (port 1883 by default), with `?client_id=` to choose the client id
/// (default `micro-<uuid>`).
fn options(url: &str) -> Result<MqttOptions, String> {
    let bad = |why: &str| format!("mqtt: the broker URL {url:?} {why}");
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .ok_or_else(|| bad("must start with mqtt://"))?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let rest = rest.trim_end_matches('/');
    let (login, address) = match rest.rsplit_once('@') {
        Some((login, address)) => (Some(login), address),
        None => (None, rest),
    };
    let (host, port) = match address.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse()
                .map_err(|_| bad("has a port that is not a number"))?,
        ),
        None => (address, 1883),
    };
    if host.is_empty() {
        return Err(bad("names no host"));
    }
    let id = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("client_id="))
        .map_or_else(
            || format!("micro-{}", uuid::Uuid::new_v4().simple()),
            str::to_owned,
        );
    let mut options = MqttOptions::new(id, host, port);
    if let Some(login) = login {
        let (user, password) = login.split_once(':').unwrap_or((login, ""));
        options.set_credentials(user, password);
    }
    Ok(options)
}

/// Polls the connection for as long as the process runs: routes messages,
/// completes publishes and subscribes, and subscribes again after a
/// reconnect.
async fn drive(mut events: EventLoop, client: AsyncClient, shared: Arc<Shared>, url: String) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_millis(100);
                let filters: Vec<(String, usize)> = {
                    let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                    if !ack.session_present {
                        // The broker lost the session: what was in flight
                        // is not coming back.
                        for (_, waiter) in state.sent.drain() {
                            let _ = waiter.send(Err("the connection dropped before the broker acknowledged it; it may not have been delivered".into()));
                        }
                        for (_, waiter) in state.subscribed_sent.drain() {
                            let _ = waiter.send(Err("the connection dropped".into()));
                        }
                    }
                    if ack.session_present {
                        Vec::new()
                    } else {
                        state
                            .filters
                            .iter()
                            .map(|(f, e)| (f.clone(), e.id))
                            .collect()
                    }
                };
                for (filter, id) in filters {
                    tracing::info!(%filter, "mqtt: subscribing again");
                    let _ = client
                        .subscribe_with_properties(filter, QoS::AtLeastOnce, properties(id))
                        .await;
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let topic = String::from_utf8_lossy(&publish.topic).into_owned();
                let ids: Vec<usize> = publish
                    .properties
                    .as_ref()
                    .map(|p| p.subscription_identifiers.clone())
                    .unwrap_or_default();
                let message = from_publish(&publish);
                let routes = (shared.state.lock().unwrap_or_else(|e| e.into_inner()))
                    .routes_for(&ids, &topic);
                let acked = Arc::new(Acked {
                    client: client.clone(),
                    publish: Some(publish),
                });
                for route in routes {
                    let _ = route.send((acked.clone(), message.clone()));
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                // A publish sent again after a reconnect keeps its waiter.
                if pkid != 0
                    && !state.sent.contains_key(&pkid)
                    && let Some(waiter) = state.queued.pop_front()
                {
                    state.sent.insert(pkid, waiter);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                let waiter = (shared.state.lock().unwrap_or_else(|e| e.into_inner()))
                    .sent
                    .remove(&ack.pkid);
                if let Some(waiter) = waiter {
                    let outcome = match ack.reason {
                        PubAckReason::Success => Ok(None),
                        PubAckReason::NoMatchingSubscribers => Ok(Some(0)),
                        other => Err(format!("the broker refused it ({other:?})")),
                    };
                    let _ = waiter.send(outcome);
                }
            }
            Ok(Event::Outgoing(Outgoing::Subscribe(pkid))) => {
                let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(waiter) = state.subscribing.pop_front() {
                    state.subscribed_sent.insert(pkid, waiter);
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let waiter = (shared.state.lock().unwrap_or_else(|e| e.into_inner()))
                    .subscribed_sent
                    .remove(&ack.pkid);
                if let Some(waiter) = waiter {
                    let refused = ack.return_codes.iter().find(|c| {
                        !matches!(
                            c,
                            rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)
                        )
                    });
                    let _ = waiter.send(match refused {
                        None => Ok(()),
                        Some(code) => {
                            Err(format!("the broker refused the subscription ({code:?})"))
                        }
                    });
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(url = %url, error = %e, "mqtt: the connection failed; reconnecting");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// An MQTT publish as micro's message.
fn from_publish(publish: &Publish) -> Message {
    let mut metadata = Metadata::new();
    let mut id = None;
    let mut content_type = ContentType::Json;
    if let Some(properties) = &publish.properties {
        for (key, value) in &properties.user_properties {
            if key.eq_ignore_ascii_case(ID_PROPERTY) {
                id = Some(value.clone());
            } else {
                metadata.insert(key, value);
            }
        }
        if let Some(ct) = &properties.content_type {
            content_type = ContentType::from_header(ct).unwrap_or_default();
        }
    }
    Message {
        topic: from_mqtt(&publish.topic),
        id: id.unwrap_or_else(crate::wire::new_id),
        metadata,
        content_type,
        body: publish.payload.clone(),
        trace: None,
    }
}

impl MqttBroker {
    /// A broker for the MQTT 5 broker at `url` (`mqtt://host:1883`, with
    /// `?client_id=` to choose the client id), on a connection of its own.
    /// [`Backends`](crate::Backends) chosen with `MICRO_BROKER=mqtt` share
    /// theirs with the bundle.
    pub fn new(url: impl Into<String>) -> Self {
        Self::on(MqttConnection::new(url))
    }

    pub(crate) fn on(connection: Arc<MqttConnection>) -> Self {
        Self { connection }
    }
}

/// Subscribe properties carrying the subscription identifier `id`.
fn properties(id: usize) -> rumqttc::v5::mqttbytes::v5::SubscribeProperties {
    rumqttc::v5::mqttbytes::v5::SubscribeProperties {
        id: Some(id),
        user_properties: Vec::new(),
    }
}

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(format!("mqtt: {e}"))
}

impl Broker for MqttBroker {
    fn name(&self) -> &'static str {
        "mqtt"
    }

    fn connect(&self) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move { self.connection.driver().await.map(drop) })
    }

    fn publish(&self, message: Message) -> BoxFuture<'_, Result<Published, BrokerError>> {
        Box::pin(async move {
            check_topic(&message.topic)?;
            let driver = self.connection.driver().await?;
            let _permit = driver.in_flight.acquire().await.map_err(unavailable)?;
            let mut user_properties = vec![(ID_PROPERTY.to_owned(), message.id.clone())];
            for (k, v) in message.metadata.iter() {
                user_properties.push((k.to_owned(), v.to_owned()));
            }
            let properties = PublishProperties {
                content_type: Some(message.content_type.as_str().to_owned()),
                user_properties,
                ..PublishProperties::default()
            };
            let topic = to_mqtt(&message.topic);
            let (tx, rx) = oneshot::channel();
            {
                // The waiter is queued in the order the client sends.
                let mut state = driver
                    .shared
                    .state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                state.queued.push_back(tx);
                if let Err(e) = driver.client.try_publish_with_properties(
                    topic,
                    QoS::AtLeastOnce,
                    false,
                    message.body.clone(),
                    properties,
                ) {
                    state.queued.pop_back();
                    return Err(unavailable(format!(
                        "the message to {} was not sent: {e}",
                        message.topic
                    )));
                }
            }
            match tokio::time::timeout(ACK_TIMEOUT, rx).await {
                Ok(Ok(Ok(delivered))) => Ok(Published::new(message.id, delivered)),
                Ok(Ok(Err(e))) => Err(unavailable(format!(
                    "the message to {}: {e}",
                    message.topic
                ))),
                Ok(Err(_)) | Err(_) => Err(unavailable(format!(
                    "the broker did not acknowledge the message to {} within {ACK_TIMEOUT:?}; it may not have been delivered",
                    message.topic
                ))),
            }
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
            let driver = self.connection.driver().await?;
            let pattern = to_mqtt(topic);
            let filter = match &options.queue {
                Some(group) => format!("$share/{group}/{pattern}"),
                None => pattern.clone(),
            };
            let (deliver, mut messages) = mpsc::unbounded_channel::<(Arc<Acked>, Message)>();
            let (tx, rx) = oneshot::channel();
            let route = {
                let mut state = driver
                    .shared
                    .state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                state.next_id += 1;
                let id = state.next_id;
                let shared = options.queue.is_some();
                let entry = state
                    .filters
                    .entry(filter.clone())
                    .or_insert_with(|| Filter {
                        id,
                        pattern,
                        shared,
                        routes: Vec::new(),
                        turn: 0,
                    });
                let subscribe = entry.routes.is_empty().then_some(entry.id);
                entry.routes.push(Route { id, deliver });
                if let Some(sub_id) = subscribe {
                    state.subscribing.push_back(tx);
                    if let Err(e) = driver.client.try_subscribe_with_properties(
                        filter.clone(),
                        QoS::AtLeastOnce,
                        properties(sub_id),
                    ) {
                        state.subscribing.pop_back();
                        state.filters.remove(&filter);
                        return Err(unavailable(format!("subscribing to {topic}: {e}")));
                    }
                } else {
                    // The broker already sends this filter here.
                    let _ = tx.send(Ok(()));
                }
                id
            };
            let confirmed = tokio::time::timeout(ACK_TIMEOUT, rx).await;
            let forget = {
                let filter = filter.clone();
                move |driver: &Driver| -> bool {
                    let mut state = driver
                        .shared
                        .state
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    let Some(entry) = state.filters.get_mut(&filter) else {
                        return false;
                    };
                    entry.routes.retain(|r| r.id != route);
                    let last = entry.routes.is_empty();
                    if last {
                        state.filters.remove(&filter);
                    }
                    last
                }
            };
            match confirmed {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => {
                    forget(&driver);
                    return Err(unavailable(format!("subscribing to {topic}: {e}")));
                }
                Ok(Err(_)) | Err(_) => {
                    forget(&driver);
                    return Err(unavailable(format!(
                        "subscribing to {topic}: no answer from the broker within {ACK_TIMEOUT:?}"
                    )));
                }
            }
            let owned = topic.to_owned();
            let task = tokio::spawn(async move {
                while let Some((acked, message)) = messages.recv().await {
                    if let Err(e) = handler(message).await {
                        tracing::warn!(topic = %owned, error = %e, "subscriber failed");
                    }
                    // The delivery is acknowledged as the last holder drops it.
                    drop(acked);
                }
            });
            Ok(Subscription::new(
                topic,
                options.queue,
                move || async move {
                    if forget(&driver) {
                        let _ = driver.client.unsubscribe(filter).await;
                    }
                    task.abort();
                    Ok(())
                },
            ))
        })
    }
}
