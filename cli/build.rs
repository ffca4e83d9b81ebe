//! Which of the CLI's tests can run here, as `tests/build.rs` decides for
//! the integration tests: `micro_test_root` when building as root (the
//! mDNS tests make network namespaces), `micro_test_nats` when
//! `MICRO_TEST_NATS` names a NATS server. A test that cannot run is
//! compiled as ignored, with the reason, so that the summary counts it.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=MICRO_TEST_NATS");
    println!("cargo::rustc-check-cfg=cfg(micro_test_root, micro_test_nats)");
    if std::env::var_os("MICRO_TEST_NATS").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=micro_test_nats");
    }
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    });
    if root {
        println!("cargo::rustc-cfg=micro_test_root");
    }
}
