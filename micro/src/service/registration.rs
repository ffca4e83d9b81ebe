//! A service's registration: its node record, registering with retries,
//! renewing, and the address it advertises.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::broker::Advertisement;
use crate::registry::{self, Node, RegisterOptions, Registry};

/// The node record of a service listening at `advertised`: its metadata
/// says how it is reached; [`set_subscriptions`] adds what it subscribes
/// to.
pub(super) fn node(
    service: &str,
    advertised: String,
    registry: &dyn Registry,
    broker: &dyn crate::broker::Broker,
) -> Node {
    Node::new(format!("{service}-{}", uuid::Uuid::new_v4()), advertised)
        .with_metadata("protocol", "http")
        .with_metadata("transport", "http")
        .with_metadata("server", "http")
        .with_metadata("registry", registry.name())
        .with_metadata("broker", broker.name())
}

/// The metadata that lists `subscriptions`: for each topic, its queue
/// groups (docs/wire.md, "Events over HTTP").
pub(super) fn listed(subscriptions: &[crate::broker::Subscription]) -> BTreeMap<String, String> {
    let mut by_topic: BTreeMap<&str, Vec<Option<&str>>> = BTreeMap::new();
    for s in subscriptions {
        by_topic.entry(s.topic()).or_default().push(s.queue());
    }
    by_topic
        .into_iter()
        .map(|(topic, queues)| {
            (
                crate::broker::metadata_key(topic),
                crate::broker::metadata_value(queues.into_iter()),
            )
        })
        .collect()
}

/// Replaces the node's subscription entries (`sub.*`) with `entries`.
pub(super) fn set_subscriptions(node: &mut Node, entries: BTreeMap<String, String>) {
    node.metadata
        .retain(|key, _| !key.starts_with(crate::broker::METADATA_PREFIX));
    node.metadata.extend(entries);
}

/// Registers, retrying a failing registry three times with backoff.
pub(super) async fn register_with_retries(
    registry: &dyn Registry,
    record: &registry::Record,
    options: &RegisterOptions,
) -> std::result::Result<(), registry::RegistryError> {
    let mut pause = Duration::from_millis(100);
    for _ in 0..3 {
        match registry.register(record, options.clone()).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(service = %record.name, error = %e, "registering failed; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
    registry.register(record, options.clone()).await
}

/// The node metadata of the leads a node holds (`leader.*`), both ends:
/// the renewal keeps the sender so that the channel lives as long as it.
pub(super) type Leads = (
    watch::Sender<BTreeMap<String, String>>,
    watch::Receiver<BTreeMap<String, String>>,
);

/// Renews the registration every `interval`, and at once when the
/// broker's advertised subscriptions change, until the task is aborted (a
/// graceful stop aborts it before it deregisters).
pub(super) async fn renew(
    registry: Arc<dyn Registry>,
    mut record: registry::Record,
    options: RegisterOptions,
    interval: Duration,
    mut advert: Option<Advertisement>,
    // The leads this node holds (`leader.*`); the sender lives in the
    // handle, so a change re-registers at once.
    (_leaders, mut leaders): Leads,
) {
    let mut next = tokio::time::Instant::now() + interval;
    loop {
        let changed = async {
            match &mut advert {
                Some(a) => a.changed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep_until(next) => next += interval,
            Ok(()) = leaders.changed() => {
                let node = &mut record.nodes[0];
                node.metadata.retain(|key, _| !key.starts_with(super::LEADER_PREFIX));
                node.metadata.extend(leaders.borrow_and_update().clone());
            }
            alive = changed => {
                if !alive {
                    advert = None;
                    continue;
                }
            }
        }
        let version = advert.as_mut().map(|a| {
            let (version, entries) = a.current();
            set_subscriptions(&mut record.nodes[0], entries);
            version
        });
        match registry.register(&record, options.clone()).await {
            Ok(()) => {
                if let (Some(a), Some(version)) = (&advert, version) {
                    a.registered(version);
                }
            }
            Err(e) => {
                tracing::warn!(service = %record.name, error = %e, "renewing the registration failed");
            }
        }
    }
}

/// The address to advertise for a listener: an unspecified bind address
/// (`0.0.0.0`, `::`) becomes this host's first non-loopback address of the
/// same family, or loopback on a host that has none.
pub(super) fn advertise_address(local: SocketAddr) -> SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = local.ip();
    if !ip.is_unspecified() {
        return local;
    }
    let found = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .find(|a| {
            !a.is_loopback()
                && a.is_ipv4() == ip.is_ipv4()
                && !matches!(a, IpAddr::V6(v6) if v6.is_unicast_link_local())
        });
    let ip = found.unwrap_or(match ip {
        IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
        IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
    });
    SocketAddr::new(ip, local.port())
}
