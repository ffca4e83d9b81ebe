//! `#[subscribe]` on free functions and on service methods, through a
//! service's broker, with the in-process memory broker.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use micro::broker::{MemoryBroker, Publisher};
use micro::client::CallOptions;
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
