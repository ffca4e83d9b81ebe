//! A service with one leader task, on the lock backend `MICRO_SYNC` and
//! `MICRO_SYNC_ADDRESS` choose. Prints `listening on <addr>` once it
//! serves, `leading <fence>` when it wins the lead of the election named
//! by `ELECTION` (default `singleton`; time to live 1 s) and `lost <fence>`
//! when the lead ends; stops gracefully (resigning) on SIGINT or SIGTERM.
//!
//! While leading it writes its token every 50 ms to the record named by
//! the election in the scope `leaders` of the store `MICRO_STORE` chooses,
//! with a fence check, and prints `fenced <fence>` if a write is refused:
//! a later leader has written, so two led at once.

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
    let backends = micro::Backends::from_env();
    let log = micro::store::Scoped::new(backends.store().clone(), "leaders").expect("a scope");
    let record = election.clone();
    let service = micro::Service::new("leaders")
        .address("127.0.0.1:0")
        .backends(&backends)
        .leader_task_with_ttl(election, Duration::from_secs(1), move |leading| {
            let (log, record) = (log.clone(), record.clone());
            async move {
                let fence = leading.fence();
                say(&format!("leading {fence}"));
                let writes = async {
                    loop {
                        match log.write(&record, &fence).fence(fence).send().await {
                            Ok(_) => {}
                            Err(e) if e.code() == 409 => say(&format!("fenced {fence}")),
                            Err(e) => say(&format!("write failed {e}")),
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                };
                tokio::select! {
                    () = writes => {}
                    () = leading.lost() => {}
                }
                say(&format!("lost {fence}"));
            }
        });
    let running = service.start().await.expect("starts");
    say(&format!("listening on {}", running.local_addr()));
    micro::service::shutdown_signal().await;
    running.stop().await.expect("stops");
}
