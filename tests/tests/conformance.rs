//! The conformance suites of `micro_tests::conformance`, one test per
//! backend.

use std::sync::Arc;

use micro::broker::{Broker, MemoryBroker};
use micro::registry::{MdnsRegistry, MemoryRegistry};
use micro_tests::conformance;
use micro_tests::netns::isolated;

#[tokio::test]
async fn memory_registry() {
    conformance::registry(|| Arc::new(MemoryRegistry::new()), "memory", true).await;
}

#[test]
#[cfg_attr(
    not(micro_test_root),
    ignore = "needs root: it makes network namespaces for mDNS"
)]
fn mdns_registry() {
    isolated(|| async {
        conformance::registry(
            || Arc::new(MdnsRegistry::builder().interfaces(["lo"]).build()),
            "mdns",
            false,
        )
        .await;
    });
}

#[tokio::test]
async fn memory_broker() {
    // One broker for every side: in-process delivery.
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    conformance::broker(
        || broker.clone(),
        "memory",
        conformance::BrokerTraits {
            reports_errors: true,
            synchronous: true,
        },
    )
    .await;
}

#[cfg(feature = "nats")]
#[tokio::test]
#[cfg_attr(
    not(micro_test_nats),
    ignore = "needs a NATS server: set MICRO_TEST_NATS=nats://127.0.0.1:4222"
)]
async fn nats_broker() {
    let url = std::env::var("MICRO_TEST_NATS").expect("MICRO_TEST_NATS names the server");
    let prefix = format!("conformance.{}", std::process::id());
    conformance::broker(
        || {
            let broker = micro::broker::NatsBroker::new(&url);
            Arc::new(broker) as Arc<dyn Broker>
        },
        &prefix,
        conformance::BrokerTraits {
            reports_errors: false,
            synchronous: false,
        },
    )
    .await;
}
