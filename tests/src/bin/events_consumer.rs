//! Consumes a topic as one member of a group on the NATS server at
//! `MICRO_TEST_NATS`, printing `acked N` once the ack of the event
//! carrying `N` has been sent, until it is killed. Prints `ready` once it
//! consumes. Arguments: the topic and the group. Built with the `nats`
//! feature only.

#[cfg(feature = "nats")]
#[tokio::main(flavor = "current_thread")]
async fn main() {
    use std::io::Write;
    use std::sync::Arc;
    use std::time::Duration;

    use futures_util::StreamExt;
    use micro::events::{ConsumeOptions, NatsEvents, Start, Topics};

    let mut args = std::env::args().skip(1);
    let (topic, group) = (args.next().expect("a topic"), args.next().expect("a group"));
    let url = std::env::var("MICRO_TEST_NATS").expect("MICRO_TEST_NATS names the server");
    let topics = Topics::new(Arc::new(NatsEvents::new(url)));
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
        delivery.ack().await.expect("acked");
        writeln!(out, "acked {n}").unwrap();
        out.flush().unwrap();
    }
}

#[cfg(not(feature = "nats"))]
fn main() {
    eprintln!("events_consumer needs the nats feature");
    std::process::exit(2);
}
