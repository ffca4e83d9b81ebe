//! Which of the CLI's tests can run here, as `tests/build.rs` decides for
//! the integration tests: `micro_test_root` when building as root (the
//! mDNS tests make network namespaces), `micro_test_nats` when
//! `MICRO_TEST_NATS` names a NATS server, `micro_test_browser` and
//! `micro_test_mcp` when `MICRO_TEST_BROWSER` (headless Chromium) and
//! `MICRO_TEST_MCP` (Python's `mcp` package) say the tools are there. A test that cannot run is
//! compiled as ignored, with the reason, so that the summary counts it.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!(
        "cargo::rustc-check-cfg=cfg(micro_test_root, micro_test_nats, micro_test_browser, micro_test_mcp)"
    );
    for (var, cfg) in [
        ("MICRO_TEST_NATS", "micro_test_nats"),
        ("MICRO_TEST_BROWSER", "micro_test_browser"),
        ("MICRO_TEST_MCP", "micro_test_mcp"),
    ] {
        println!("cargo::rerun-if-env-changed={var}");
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        }
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
