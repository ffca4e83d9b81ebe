//! Which of the integration tests can run here. A test that needs what
//! this machine lacks is compiled as ignored, with the reason, so that
//! `cargo test` lists it as ignored in its summary instead of passing it
//! silently:
//!
//! - `micro_test_root`: running as root, which the mDNS tests need to make
//!   their network namespaces;
//! - `micro_test_etcd`, `micro_test_nats`, `micro_test_rabbitmq`, `micro_test_mqtt`, `micro_test_nats_kv`, `micro_test_postgres`, `micro_test_redis`, `micro_test_zeroconf`,
//!   `micro_test_websockets`, `micro_test_browser`: the variable of the
//!   same name in upper case is set (`MICRO_TEST_NATS=nats://…`,
//!   `MICRO_TEST_REDIS=redis://…`, `MICRO_TEST_ETCD=http://…`, `MICRO_TEST_RABBITMQ=amqp://…`, the others `=1`), which says the
//!   server or tool is there; a test that is told so and cannot reach it
//!   fails.

const VARIABLES: [(&str, &str); 10] = [
    ("MICRO_TEST_RABBITMQ", "micro_test_rabbitmq"),
    ("MICRO_TEST_MQTT", "micro_test_mqtt"),
    ("MICRO_TEST_ETCD", "micro_test_etcd"),
    ("MICRO_TEST_NATS", "micro_test_nats"),
    ("MICRO_TEST_NATS_KV", "micro_test_nats_kv"),
    ("MICRO_TEST_POSTGRES", "micro_test_postgres"),
    ("MICRO_TEST_REDIS", "micro_test_redis"),
    ("MICRO_TEST_ZEROCONF", "micro_test_zeroconf"),
    ("MICRO_TEST_WEBSOCKETS", "micro_test_websockets"),
    ("MICRO_TEST_BROWSER", "micro_test_browser"),
];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let mut all = vec!["micro_test_root"];
    for (var, cfg) in VARIABLES {
        println!("cargo::rerun-if-env-changed={var}");
        all.push(cfg);
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
    println!("cargo::rustc-check-cfg=cfg({})", all.join(", "));
    if is_root() {
        println!("cargo::rustc-cfg=micro_test_root");
    }
}

/// Whether the build (and so, almost always, the test run) is root's.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?.to_owned();
            Some(line.split_whitespace().nth(1)? == "0")
        })
        .unwrap_or(false)
}
