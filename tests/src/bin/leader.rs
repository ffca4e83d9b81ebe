//! A service with one leader task, on the lock backend `MICRO_SYNC` and
//! `MICRO_SYNC_ADDRESS` choose. Prints `listening on <addr>` once it
//! serves, `leading <fence>` when it wins the lead of the election named
//! by `ELECTION` (default `singleton`; time to live 1 s) and `lost <fence>`
//! when the lead ends; stops gracefully (resigning) on SIGINT or SIGTERM.

use std::io::Write;
use std::time::Duration;

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

#[tokio::main]
async fn main() {
    let election = std::env::var("ELECTION").unwrap_or_else(|_| "singleton".to_owned());
    let service = micro::Service::new("leaders")
        .address("127.0.0.1:0")
        .backends(&micro::Backends::from_env())
        .leader_task_with_ttl(election, Duration::from_secs(1), |leading| async move {
            say(&format!("leading {}", leading.fence()));
            leading.lost().await;
            say(&format!("lost {}", leading.fence()));
        });
    let running = service.start().await.expect("starts");
    say(&format!("listening on {}", running.local_addr()));
    micro::service::shutdown_signal().await;
    running.stop().await.expect("stops");
}
