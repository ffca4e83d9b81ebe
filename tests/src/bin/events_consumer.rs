//! Consumes a topic as one member of a group on the events backend that
//! `MICRO_EVENTS` and `MICRO_EVENTS_ADDRESS` choose, printing `got N` when
//! the event carrying `N` arrives and `acked N` once its ack is done, until
//! it is killed. Prints `ready` once it consumes. Arguments: the topic and the
//! group.

use std::io::Write;
use std::time::Duration;

use futures_util::StreamExt;
use micro::events::{ConsumeOptions, Start, Topics};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (topic, group) = (args.next().expect("a topic"), args.next().expect("a group"));
    let backends = micro::Backends::from_env();
    let topics = Topics::new(backends.events().clone());
    let options = ConsumeOptions::group(group)
        .start(Start::Beginning)
        .ack_wait(Duration::from_secs(2))
        .max_attempts(100);
    let mut deliveries = topics.consume(&topic, options).await.expect("consume");
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    while let Some(delivery) = deliveries.next().await {
        let delivery = delivery.expect("a delivery");
        let n: u32 = delivery.decode().expect("a number");
        writeln!(out, "got {n}").unwrap();
        out.flush().unwrap();
        delivery.ack().await.expect("acked");
        writeln!(out, "acked {n}").unwrap();
        out.flush().unwrap();
    }
}
