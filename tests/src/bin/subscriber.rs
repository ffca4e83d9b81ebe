//! A process that only subscribes: `SUB_TOPIC` in queue group `SUB_QUEUE`
//! (if set), on the default registry and broker. It records the numbers it
//! receives and serves them at `Seen.Numbers`, so a test can check what
//! arrived. Prints `listening on <addr>` once subscribed and registered.

use std::sync::{Arc, Mutex};

use micro::broker::{Message, SubscribeOptions};
use micro::{Result, handler, service};

struct Seen {
    numbers: Arc<Mutex<Vec<u32>>>,
}

#[service]
impl Seen {
    #[handler]
    async fn numbers(&self) -> Result<Vec<u32>> {
        Ok(self.numbers.lock().unwrap().clone())
    }
}

#[tokio::main]
async fn main() -> micro::Result<()> {
    let topic = std::env::var("SUB_TOPIC").unwrap_or_else(|_| "events".to_owned());
    let options = match std::env::var("SUB_QUEUE") {
        Ok(queue) => SubscribeOptions::queue(queue),
        Err(_) => SubscribeOptions::default(),
    };
    let numbers = Arc::new(Mutex::new(Vec::new()));
    let log = numbers.clone();
    let running = micro::Service::new("subscriber")
        .address("127.0.0.1:0")
        .handle(Seen { numbers })
        .subscribe(
            topic,
            options,
            micro::broker::handler(move |msg: Message| {
                let log = log.clone();
                async move {
                    log.lock().unwrap().push(msg.decode()?);
                    Ok(())
                }
            }),
        )
        .start()
        .await?;
    println!("listening on {}", running.local_addr());
    micro::service::shutdown_signal().await;
    running.stop().await
}
