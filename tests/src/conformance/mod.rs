//! Behaviour every backend of a trait must have, written once and run
//! against each backend: a new backend passes by adding one test that
//! calls the suite with a way to make it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use micro::registry::{EventKind, Node, Record, RegisterOptions, Registry, RegistryError, Watcher};

/// A record of service `name` (version `version`) with one node.
fn record(name: &str, version: &str, node: &str, address: &str) -> Record {
    Record::new(name)
        .with_version(version)
        .with_node(Node::new(node, address).with_metadata("protocol", "http"))
}

/// The nodes of every version of `name`, sorted by id.
async fn nodes(registry: &dyn Registry, name: &str) -> Vec<Node> {
    let mut nodes: Vec<Node> = match registry.get_service(name).await {
        Ok(records) => records.into_iter().flat_map(|r| r.nodes).collect(),
        Err(RegistryError::NotFound(_)) => Vec::new(),
        Err(e) => panic!("get_service({name}): {e}"),
    };
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    nodes
}

/// The next event of `watcher` about service `name`, within `limit`.
async fn next_event(watcher: &mut Watcher, name: &str, limit: Duration) -> (EventKind, usize) {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, watcher.next())
            .await
            .unwrap_or_else(|_| panic!("no event about {name} within {limit:?}"))
            .expect("the watch goes on")
            .expect("no lag");
        if event.service.name == name {
            return (event.kind, event.service.nodes.len());
        }
    }
}

/// The registry contract (`micro::registry::Registry`): register, get,
/// list, watch, renew, TTL and deregister. `make` gives a fresh registry;
/// `prefix` keeps the names of one run apart from others the backend may
/// hold. `expires_in_process`: a registration with a TTL that this
/// process stops renewing expires here. mDNS cannot promise that: the
/// process's own daemon still answers for it, so its TTL is tested by
/// killing the registering process instead (tests/mdns.rs).
///
/// # Panics
/// On the first behaviour the backend gets wrong.
pub async fn registry(
    make: impl Fn() -> Arc<dyn Registry>,
    prefix: &str,
    expires_in_process: bool,
) {
    let registry = make();
    let name = |n: &str| format!("{prefix}-{n}");

    // Nothing there: not found, by name.
    let missing = name("missing");
    match registry.get_service(&missing).await {
        Err(RegistryError::NotFound(n)) => assert_eq!(n, missing),
        other => panic!("get_service of an unknown name: {other:?}"),
    }
    assert_eq!(
        registry
            .get_service(&missing)
            .await
            .unwrap_err()
            .to_string(),
        format!("service \"{missing}\" not found in registry")
    );

    // Register, get, list.
    let greeter = name("greeter");
    let mut watcher = registry.watch().await.expect("watch");
    let a = record(&greeter, "v1", &format!("{greeter}-a"), "127.0.0.1:1001");
    registry
        .register(&a, RegisterOptions::default())
        .await
        .expect("register");
    assert_eq!(
        next_event(&mut watcher, &greeter, Duration::from_secs(5)).await,
        (EventKind::Create, 1)
    );
    let found = registry.get_service(&greeter).await.expect("found");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].version, "v1");
    assert_eq!(found[0].nodes, a.nodes);
    let listed = registry.list_services().await.expect("list");
    assert!(listed.iter().any(|s| s.name == greeter), "{listed:?}");

    // Registering again renews and replaces; it does not add a node.
    let a2 = record(&greeter, "v1", &format!("{greeter}-a"), "127.0.0.1:1002");
    registry
        .register(&a2, RegisterOptions::default())
        .await
        .unwrap();
    let now = nodes(&*registry, &greeter).await;
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].address, "127.0.0.1:1002");
    assert_eq!(
        next_event(&mut watcher, &greeter, Duration::from_secs(5)).await,
        (EventKind::Update, 1)
    );

    // Nodes of one name and version accumulate; another version is
    // another record.
    let b = record(&greeter, "v1", &format!("{greeter}-b"), "127.0.0.1:1003");
    registry
        .register(&b, RegisterOptions::default())
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut watcher, &greeter, Duration::from_secs(5)).await,
        (EventKind::Update, 2)
    );
    let c = record(&greeter, "v2", &format!("{greeter}-c"), "127.0.0.1:1004");
    registry
        .register(&c, RegisterOptions::default())
        .await
        .unwrap();
    let versions = registry.get_service(&greeter).await.unwrap();
    let mut by_version: Vec<(String, usize)> = versions
        .iter()
        .map(|r| (r.version.clone(), r.nodes.len()))
        .collect();
    by_version.sort();
    assert_eq!(by_version, [("v1".to_owned(), 2), ("v2".to_owned(), 1)]);
    assert_eq!(nodes(&*registry, &greeter).await.len(), 3);
    let _ = next_event(&mut watcher, &greeter, Duration::from_secs(5)).await;

    // Deregistering removes only the nodes named; an unknown node is no
    // error; the last node's going is a delete.
    registry.deregister(&c).await.unwrap();
    assert_eq!(
        next_event(&mut watcher, &greeter, Duration::from_secs(5)).await,
        (EventKind::Delete, 1)
    );
    registry.deregister(&a2).await.unwrap();
    assert_eq!(nodes(&*registry, &greeter).await, b.nodes);
    let ghost = record(&greeter, "v1", &format!("{greeter}-ghost"), "127.0.0.1:1");
    registry
        .deregister(&ghost)
        .await
        .expect("deregistering an unknown node is fine");
    registry.deregister(&b).await.unwrap();
    assert!(nodes(&*registry, &greeter).await.is_empty());
    assert!(matches!(
        registry.get_service(&greeter).await,
        Err(RegistryError::NotFound(_))
    ));

    // A registration with a TTL and no renewal expires by itself, and
    // watchers hear of it.
    if expires_in_process {
        let short = name("short");
        let s = record(&short, "latest", &format!("{short}-1"), "127.0.0.1:1005");
        let ttl = Duration::from_millis(600);
        registry
            .register(&s, RegisterOptions::with_ttl(ttl))
            .await
            .unwrap();
        assert_eq!(nodes(&*registry, &short).await.len(), 1);
        let (kind, _) = next_event(&mut watcher, &short, Duration::from_secs(5)).await;
        assert_eq!(kind, EventKind::Create);
        let (kind, _) = next_event(&mut watcher, &short, ttl + Duration::from_secs(5)).await;
        assert_eq!(kind, EventKind::Delete, "the node expired");
        assert!(nodes(&*registry, &short).await.is_empty());
    }

    // Renewal keeps a TTL registration alive past its TTL.
    let kept = name("kept");
    let k = record(&kept, "latest", &format!("{kept}-1"), "127.0.0.1:1006");
    let ttl = Duration::from_millis(600);
    for _ in 0..4 {
        registry
            .register(&k, RegisterOptions::with_ttl(ttl))
            .await
            .unwrap();
        tokio::time::sleep(ttl / 3).await;
    }
    assert_eq!(nodes(&*registry, &kept).await.len(), 1, "renewed in time");
    registry.deregister(&k).await.unwrap();

    // Invalid records are refused, with a reason.
    let err = registry
        .register(&Record::new(""), RegisterOptions::default())
        .await
        .expect_err("an empty name is refused");
    assert!(matches!(err, RegistryError::Invalid(_)), "{err}");
}

/// What a broker backend can promise beyond the common contract.
#[derive(Clone, Copy, Debug)]
pub struct BrokerTraits {
    /// A subscriber's error reaches the publisher (brokers that deliver
    /// themselves; not NATS, which is at most once).
    pub reports_errors: bool,
    /// `publish` returns after the subscribers ran (in-process and HTTP
    /// delivery); otherwise the suite waits for deliveries.
    pub synchronous: bool,
}

/// What one subscriber received: (payload, id, `x-tenant` metadata).
type Seen = Arc<std::sync::Mutex<Vec<(u32, String, Option<String>)>>>;

async fn subscribe(
    broker: &dyn micro::broker::Broker,
    topic: &str,
    queue: Option<&str>,
) -> (micro::broker::Subscription, Seen) {
    use micro::broker::{Message, SubscribeOptions, handler};
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let options = queue.map_or_else(SubscribeOptions::default, SubscribeOptions::queue);
    let sub = broker
        .subscribe(
            topic,
            handler(move |msg: Message| {
                let log = log.clone();
                async move {
                    let n: u32 = msg.decode()?;
                    if n == 4242 {
                        return Err(micro::Error::conflict("refusing 4242"));
                    }
                    let tenant = msg.metadata.get("x-tenant").map(str::to_owned);
                    log.lock().unwrap().push((n, msg.id.clone(), tenant));
                    Ok(())
                }
            }),
            options,
        )
        .await
        .expect("subscribe");
    (sub, seen)
}

fn count(seen: &[&Seen]) -> usize {
    seen.iter().map(|s| s.lock().unwrap().len()).sum()
}

/// Waits until the subscribers together hold `n` messages (at once for a
/// synchronous broker), and a moment more to see that no more arrive.
async fn settle(seen: &[&Seen], n: usize, traits: BrokerTraits) {
    if !traits.synchronous {
        let deadline = Instant::now() + Duration::from_secs(10);
        while count(seen) < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count(seen), n, "messages delivered");
}

async fn publish(broker: &dyn micro::broker::Broker, topic: &str, n: u32, from: u32) {
    use micro::broker::Message;
    use micro::codec::ContentType;
    for i in from..from + n {
        let mut msg = Message::encode(topic, &i, ContentType::Json).unwrap();
        msg.metadata.insert("x-tenant", "acme");
        broker.publish(msg).await.expect("publish");
    }
}

/// The broker contract (`micro::broker::Broker`): every subscriber
/// without a queue group gets every message, each group gets it once,
/// metadata and ids travel, an unsubscribed handler gets nothing, bad
/// topics are refused, and (where the broker can tell) a subscriber's
/// error reaches the publisher. `make` gives a connected broker, one per
/// side (as another process would have); `prefix` keeps topics of one run
/// apart.
///
/// # Panics
/// On the first behaviour the backend gets wrong.
pub async fn broker(
    make: impl AsyncFn() -> Arc<dyn micro::broker::Broker>,
    prefix: &str,
    traits: BrokerTraits,
) {
    let publisher = make().await;
    let subscriber = make().await;
    let topic = |t: &str| format!("{prefix}.{t}");

    // Broadcast: each subscriber without a group gets every message once,
    // with its id and metadata.
    let all = topic("broadcast");
    let (s1, a) = subscribe(&*subscriber, &all, None).await;
    let (s2, b) = subscribe(&*subscriber, &all, None).await;
    publish(&*publisher, &all, 20, 0).await;
    settle(&[&a, &b], 40, traits).await;
    for seen in [&a, &b] {
        let mut got: Vec<u32> = seen.lock().unwrap().iter().map(|m| m.0).collect();
        got.sort_unstable();
        assert_eq!(got, (0..20).collect::<Vec<_>>());
        assert!(
            seen.lock()
                .unwrap()
                .iter()
                .all(|m| m.2.as_deref() == Some("acme") && !m.1.is_empty())
        );
    }
    let ids: std::collections::HashSet<String> =
        a.lock().unwrap().iter().map(|m| m.1.clone()).collect();
    assert_eq!(ids.len(), 20, "each message has its own id");

    // Queue groups: each group gets each message once, shared among its
    // members; another group gets its own copy.
    let jobs = topic("jobs");
    let (w1s, w1) = subscribe(&*subscriber, &jobs, Some("workers")).await;
    let (w2s, w2) = subscribe(&*make().await, &jobs, Some("workers")).await;
    let (aus, audit) = subscribe(&*subscriber, &jobs, Some("audit")).await;
    publish(&*publisher, &jobs, 40, 0).await;
    settle(&[&w1, &w2], 40, traits).await;
    settle(&[&audit], 40, traits).await;
    let mut shared: Vec<u32> = w1
        .lock()
        .unwrap()
        .iter()
        .chain(w2.lock().unwrap().iter())
        .map(|m| m.0)
        .collect();
    shared.sort_unstable();
    assert_eq!(
        shared,
        (0..40).collect::<Vec<_>>(),
        "each job to exactly one worker"
    );

    // Unsubscribed: nothing more arrives.
    s2.unsubscribe().await.expect("unsubscribe");
    publish(&*publisher, &all, 5, 100).await;
    settle(&[&a], 25, traits).await;
    assert_eq!(
        b.lock().unwrap().len(),
        20,
        "an unsubscribed handler got a message"
    );

    // A subscriber's error reaches the publisher, with its code.
    if traits.reports_errors {
        use micro::broker::Message;
        use micro::codec::ContentType;
        let msg = Message::encode(&all, &4242u32, ContentType::Json).unwrap();
        let err = publisher
            .publish(msg)
            .await
            .expect_err("the subscriber refused");
        assert_eq!(micro::Error::from(err).code(), 409);
    }

    // Bad topics are refused, on both sides.
    use micro::broker::{Message, SubscribeOptions, handler};
    use micro::codec::ContentType;
    let bad = Message::encode("a b", &1u32, ContentType::Json).unwrap();
    assert!(publisher.publish(bad).await.is_err());
    let refused = subscriber
        .subscribe(
            "",
            handler(|_| async { Ok(()) }),
            SubscribeOptions::default(),
        )
        .await;
    assert!(refused.is_err());

    for s in [s1, w1s, w2s, aus] {
        let _ = s.unsubscribe().await;
    }
}

mod events;
mod store;
mod sync;

pub use events::events;
pub use store::{StoreTraits, store};
pub use sync::sync;
