//! Calls `Greeter.Pid` of the service named by the first argument, by name
//! through the default registry (`MICRO_REGISTRY`), waiting up to 20 s for
//! it to appear; prints `served by <pid>` and exits 0, or exits 1.

use std::time::{Duration, Instant};

use micro_tests::GreeterClient;

#[tokio::main]
async fn main() {
    let service = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "greeter".to_owned());
    let client = GreeterClient::new(service, micro::Client::new());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.pid().await {
            Ok(pid) => {
                println!("served by {pid}");
                return;
            }
            Err(e) if Instant::now() < deadline && e.code() == 503 => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                eprintln!("call failed: {e}");
                std::process::exit(1);
            }
        }
    }
}
