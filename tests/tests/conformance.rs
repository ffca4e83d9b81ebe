//! The conformance suites of `micro_tests::conformance`, one test per
//! backend.

use std::sync::Arc;

use micro::registry::{MdnsRegistry, MemoryRegistry};
use micro_tests::conformance;
use micro_tests::netns::isolated;

#[tokio::test]
async fn memory_registry() {
    conformance::registry(|| Arc::new(MemoryRegistry::new()), "memory").await;
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
        )
        .await;
    });
}
