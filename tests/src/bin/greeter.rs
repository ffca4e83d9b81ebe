//! The test service in a process of its own.
//!
//! Listens on `MICRO_SERVER_ADDRESS` (default 127.0.0.1:0), prints
//! `listening on <addr>` once it serves, and stops gracefully on SIGINT or
//! SIGTERM. `GREETER_GRACE_MS`, `GREETER_DELAY_MS`, `GREETER_TTL_MS` and
//! `GREETER_INTERVAL_MS` set the grace period, the shutdown delay, the
//! registration TTL and the re-registration interval. The registry is the
//! default one, chosen by `MICRO_REGISTRY`.

use std::time::Duration;

use micro_tests::Greeter;

fn millis(var: &str) -> Option<Duration> {
    std::env::var(var)
        .ok()
        .map(|v| Duration::from_millis(v.parse().expect("milliseconds")))
}

#[tokio::main]
async fn main() -> micro::Result<()> {
    if std::env::var_os("GREETER_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
            .init();
    }
    let mut service = micro::Service::new("greeter")
        .address("127.0.0.1:0")
        .handle(Greeter);
    if let Some(grace) = millis("GREETER_GRACE_MS") {
        service = service.grace_period(grace);
    }
    if let Some(delay) = millis("GREETER_DELAY_MS") {
        service = service.shutdown_delay(delay);
    }
    if let Some(ttl) = millis("GREETER_TTL_MS") {
        service = service.register_ttl(ttl);
    }
    if let Some(interval) = millis("GREETER_INTERVAL_MS") {
        service = service.register_interval(interval);
    }
    let running = service.start().await?;
    println!("listening on {}", running.local_addr());
    micro::service::shutdown_signal().await;
    println!("stopping");
    running.stop().await?;
    println!("stopped");
    Ok(())
}
