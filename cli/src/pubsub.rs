//! `micro publish` and `micro subscribe`: the broker, from the command line.

use std::sync::Arc;

use micro::broker::{Message, SubscribeOptions};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::output::{self, Failure};

/// `micro publish`: prints the message's id and, where the broker can
/// tell, how many subscribers took it.
pub(crate) async fn publish(
    backends: &micro::Backends,
    topic: &str,
    message: &str,
    json: bool,
) -> Result<(), Failure> {
    let text = crate::call::argument(message).await?;
    let message: Value = crate::call::parse(&text, "message")?;
    let client = micro::Client::builder().backends(backends).build();
    let published = client.publish(topic, &message).await?;
    if json {
        output::json(&json!({ "id": published.id, "delivered": published.delivered }));
    } else {
        match published.delivered {
            Some(n) => println!(
                "published {} to {topic}: {n} subscribers took it",
                published.id
            ),
            None => println!("published {} to {topic}", published.id),
        }
    }
    Ok(())
}

/// `micro subscribe`: a service of its own (`micro-cli`) subscribed to
/// `topic`, printing each message's payload as a line of JSON until
/// interrupted or `count` messages have come.
pub(crate) async fn subscribe(
    backends: &micro::Backends,
    topic: &str,
    queue: Option<String>,
    count: Option<u64>,
) -> Result<(), Failure> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    let tx = Arc::new(tx);
    let options = match queue {
        Some(q) => SubscribeOptions::queue(q),
        None => SubscribeOptions::default(),
    };
    let running = micro::Service::new("micro-cli")
        .backends(backends)
        .subscribe(
            topic,
            options,
            micro::broker::handler(move |message: Message| {
                let tx = tx.clone();
                async move {
                    let payload: Value = message.decode()?;
                    let _ = tx.send(payload);
                    Ok(())
                }
            }),
        )
        .start()
        .await?;
    eprintln!("subscribed to {topic}; ^C to stop");
    let mut seen = 0u64;
    loop {
        tokio::select! {
            message = rx.recv() => {
                let Some(payload) = message else { break };
                println!("{}", serde_json::to_string(&payload).unwrap_or_default());
                seen += 1;
                if count.is_some_and(|c| seen >= c) {
                    break;
                }
            }
            () = micro::service::shutdown_signal() => break,
        }
    }
    running.stop().await?;
    Ok(())
}
