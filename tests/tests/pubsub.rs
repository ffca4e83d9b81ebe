//! `#[subscribe]` on free functions and on service methods, through a
//! service's broker, with the in-process memory broker.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use micro::broker::MemoryBroker;
use micro::client::CallOptions;
use micro::client::Publisher;
use micro::codec::ContentType;
use micro::registry::MemoryRegistry;
use micro::{Client, Context, Error, Result, service, subscribe};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct AuditEvent {
    action: String,
}

/// What the free subscriber saw: (action, x-user metadata, message id).
static AUDITED: Mutex<Vec<(String, Option<String>, String)>> = Mutex::new(Vec::new());

#[subscribe("pubsub.audit")]
async fn audit(ctx: Context, ev: AuditEvent) -> Result<()> {
    if ev.action == "forbidden" {
        return Err(Error::forbidden("not allowed to audit that"));
    }
    AUDITED.lock().unwrap().push((
        ev.action,
        ctx.metadata().get("x-user").map(str::to_owned),
        ctx.id().to_owned(),
    ));
    Ok(())
}

struct Users {
    created: Arc<AtomicUsize>,
    last: Arc<Mutex<Option<u64>>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct UserCreated {
    id: u64,
}

#[service]
impl Users {
    #[subscribe("pubsub.user.created", queue = "users")]
    async fn on_created(&self, ev: UserCreated) -> Result<()> {
        self.created.fetch_add(1, Ordering::SeqCst);
        *self.last.lock().unwrap() = Some(ev.id);
        Ok(())
    }
}

#[tokio::test]
async fn subscribers_receive_what_clients_publish() {
    let broker = Arc::new(MemoryBroker::new());
    let created = Arc::new(AtomicUsize::new(0));
    let last = Arc::new(Mutex::new(None));
    let svc = micro::Service::new("users")
        .address("127.0.0.1:0")
        .registry(Arc::new(MemoryRegistry::new()))
        .broker(broker.clone())
        .handle(Users {
            created: created.clone(),
            last: last.clone(),
        })
        .start()
        .await
        .unwrap();
    assert_eq!(svc.record().nodes[0].metadata["broker"], "memory");
    let client = Client::builder().broker(broker.clone()).build();

    // The method subscriber, through a typed publisher, in MessagePack.
    let users: Publisher<UserCreated> = Publisher::new("pubsub.user.created", client.clone());
    for id in 1..=5 {
        users
            .publish_with(
                &UserCreated { id },
                CallOptions::new().content_type(ContentType::MsgPack),
            )
            .await
            .unwrap();
    }
    assert_eq!(created.load(Ordering::SeqCst), 5);
    assert_eq!(*last.lock().unwrap(), Some(5));

    // The free function, with metadata reaching its Context.
    client
        .publish_with(
            "pubsub.audit",
            &AuditEvent {
                action: "login".into(),
            },
            CallOptions::new().metadata("x-user", "ana"),
        )
        .await
        .unwrap();
    {
        let audited = AUDITED.lock().unwrap();
        let (action, user, id) = audited.last().unwrap();
        assert_eq!(action, "login");
        assert_eq!(user.as_deref(), Some("ana"));
        assert_eq!(id.len(), 36);
    }

    // A subscriber's error reaches the publisher with its code.
    let err = client
        .publish(
            "pubsub.audit",
            &AuditEvent {
                action: "forbidden".into(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), 403, "{err}");
    assert!(err.detail().contains("not allowed to audit that"), "{err}");

    // A payload that does not decode is a 400 from the subscriber.
    let err = client.publish("pubsub.audit", &42).await.unwrap_err();
    assert_eq!(err.code(), 400, "{err}");

    // After a graceful stop, nothing is delivered.
    svc.stop().await.unwrap();
    users.publish(&UserCreated { id: 99 }).await.unwrap();
    assert_eq!(created.load(Ordering::SeqCst), 5);
    let before = AUDITED.lock().unwrap().len();
    client
        .publish(
            "pubsub.audit",
            &AuditEvent {
                action: "late".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(AUDITED.lock().unwrap().len(), before);
}

mod http_broker {
    use std::sync::{Arc, Mutex};

    use micro::broker::{HttpBroker, Message, SubscribeOptions, handler};
    use micro::client::CallOptions;
    use micro::registry::{MemoryRegistry, Registry};
    use micro::{Client, Error, ServiceHandle};
    use micro_tests::RawClient;

    /// Message numbers each subscriber saw.
    type Seen = Arc<Mutex<Vec<u32>>>;

    /// A node with its own HTTP broker, as a separate process would have,
    /// subscribed to `topic` in `queue`.
    async fn node(
        registry: &Arc<MemoryRegistry>,
        topic: &str,
        queue: Option<&str>,
    ) -> (ServiceHandle, Seen) {
        let seen: Seen = Arc::default();
        let log = seen.clone();
        let options = queue.map_or_else(SubscribeOptions::default, SubscribeOptions::queue);
        let handle = micro::Service::new("subscriber")
            .address("127.0.0.1:0")
            .registry(registry.clone())
            .broker(Arc::new(HttpBroker::new(registry.clone())))
            .subscribe(
                topic,
                options,
                handler(move |msg: Message| {
                    let log = log.clone();
                    async move {
                        let n: u32 = msg.decode()?;
                        if n == 4242 {
                            return Err(Error::conflict("refusing 4242"));
                        }
                        if msg.metadata.get("x-tenant") != Some("acme") {
                            return Err(Error::bad_request("missing tenant"));
                        }
                        log.lock().unwrap().push(n);
                        Ok(())
                    }
                }),
            )
            .start()
            .await
            .unwrap();
        (handle, seen)
    }

    fn publisher(registry: &Arc<MemoryRegistry>) -> Client {
        Client::builder()
            .registry(registry.clone())
            .broker(Arc::new(HttpBroker::new(registry.clone())))
            .build()
    }

    /// Publishes `0..n`; each publish must report `takers` subscribers.
    async fn publish(client: &Client, topic: &str, n: u32, takers: usize) {
        for i in 0..n {
            let published = client
                .publish_with(topic, &i, CallOptions::new().metadata("x-tenant", "acme"))
                .await
                .unwrap();
            assert_eq!(published.delivered, Some(takers), "event {i}");
        }
    }

    fn sorted(seen: &Seen) -> Vec<u32> {
        let mut v = seen.lock().unwrap().clone();
        v.sort_unstable();
        v
    }

    #[tokio::test]
    async fn broadcast_reaches_every_subscriber_once() {
        let registry = Arc::new(MemoryRegistry::new());
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(node(&registry, "http.broadcast", None).await);
        }
        let record = &registry.get_service("subscriber").await.unwrap()[0];
        assert!(
            record
                .nodes
                .iter()
                .all(|n| n.metadata["sub.http.broadcast"] == "*")
        );
        publish(&publisher(&registry), "http.broadcast", 300, 3).await;
        for (_, seen) in &nodes {
            assert_eq!(sorted(seen), (0..300).collect::<Vec<_>>());
        }
        for (h, _) in nodes {
            h.stop().await.unwrap();
        }
    }

    #[tokio::test]
    async fn queue_groups_share_and_other_groups_all_receive() {
        let registry = Arc::new(MemoryRegistry::new());
        let mut workers = Vec::new();
        for _ in 0..3 {
            workers.push(node(&registry, "http.jobs", Some("workers")).await);
        }
        let (auditor, audited) = node(&registry, "http.jobs", Some("audit")).await;
        publish(&publisher(&registry), "http.jobs", 300, 2).await;
        let mut all: Vec<u32> = workers.iter().flat_map(|(_, s)| sorted(s)).collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..300).collect::<Vec<_>>(),
            "each job to exactly one worker"
        );
        assert!(workers.iter().all(|(_, s)| !s.lock().unwrap().is_empty()));
        assert_eq!(sorted(&audited), (0..300).collect::<Vec<_>>());
        for (h, _) in workers {
            h.stop().await.unwrap();
        }
        auditor.stop().await.unwrap();
    }

    #[tokio::test]
    async fn errors_reach_the_publisher_and_stopped_nodes_get_nothing() {
        let registry = Arc::new(MemoryRegistry::new());
        let (a, seen_a) = node(&registry, "http.errors", None).await;
        let (b, seen_b) = node(&registry, "http.errors", None).await;
        let client = publisher(&registry);

        let err = client
            .publish_with(
                "http.errors",
                &4242u32,
                CallOptions::new().metadata("x-tenant", "acme"),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), 409, "{err}");
        assert!(err.detail().contains("refusing 4242"), "{err}");
        // Metadata travels: without it the subscribers refuse.
        let err = client.publish("http.errors", &1u32).await.unwrap_err();
        assert_eq!(err.code(), 400, "{err}");

        b.stop().await.unwrap();
        publish(&client, "http.errors", 10, 1).await;
        assert_eq!(sorted(&seen_a), (0..10).collect::<Vec<_>>());
        assert!(seen_b.lock().unwrap().is_empty());

        // The wire: a raw event with Micro-Topic, and one for a topic the
        // node does not follow.
        let raw = RawClient::new();
        let addr = a.local_addr();
        let rsp = raw
            .send(
                "POST",
                addr,
                "/",
                &[
                    ("micro-topic", "http.errors"),
                    ("x-tenant", "acme"),
                    ("content-type", "application/json"),
                ],
                "77",
            )
            .await
            .unwrap();
        assert_eq!(rsp.status, 200);
        assert!(seen_a.lock().unwrap().contains(&77));
        let rsp = raw
            .send("POST", addr, "/", &[("micro-topic", "nobody.listens")], "1")
            .await
            .unwrap();
        assert_eq!(
            rsp.expect_error(404),
            "no subscriber of topic \"nobody.listens\" here"
        );
        a.stop().await.unwrap();

        // With every subscriber gone, publishing reaches nobody and is fine.
        publish(&client, "http.errors", 1, 0).await;
    }
}

/// One bundle of backends for a service and the clients near it: the
/// typed client finds the service by name, and a subscription made while
/// the service runs is advertised to publishers, then withdrawn.
#[tokio::test]
async fn a_bundle_serves_a_service_and_its_clients_and_later_subscriptions_are_found() {
    use micro::broker::{HttpBroker, SubscribeOptions, handler};
    use micro_tests::{Greeter, GreeterClient, Hello};

    let registry: Arc<dyn micro::registry::Registry> = Arc::new(MemoryRegistry::new());
    let backends = micro::Backends::memory()
        .with_registry(registry.clone())
        .with_broker(Arc::new(HttpBroker::new(registry.clone())));
    let service = micro::Service::new("bundled")
        .address("127.0.0.1:0")
        .backends(&backends)
        .handle(Greeter)
        .start()
        .await
        .expect("the service starts");
    let client = Client::builder().backends(&backends).build();
    let greeting = GreeterClient::new("bundled", client.clone())
        .hello(Hello {
            name: "bundle".into(),
        })
        .await
        .expect("found by name in the bundle's registry");
    assert_eq!(greeting.message, "Hello bundle");

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let subscription = backends
        .broker()
        .subscribe(
            "bundled.later",
            handler(move |m| {
                let tx = tx.clone();
                async move {
                    tx.send(m.decode::<u32>()?).ok();
                    Ok(())
                }
            }),
            SubscribeOptions::default(),
        )
        .await
        .expect("subscribe returns once the registration has it");
    // No waiting: `subscribe` returned after the service re-registered.
    let report = client
        .publish("bundled.later", &7u32)
        .await
        .expect("publish");
    assert_eq!(report.delivered, Some(1));
    assert_eq!(rx.recv().await, Some(7));

    subscription.unsubscribe().await.expect("unsubscribe");
    let node = |records: Vec<micro::registry::Record>| records[0].nodes[0].clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let records = registry.get_service("bundled").await.expect("registered");
        if !node(records).metadata.contains_key("sub.bundled.later") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the subscription stays advertised"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = client
        .publish("bundled.later", &8u32)
        .await
        .expect("publish");
    assert_eq!(report.delivered, Some(0), "nobody subscribes any more");
    service.stop().await.expect("stop");
}
