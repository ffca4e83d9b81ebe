//! `micro events`: durable events, published and consumed from the command
//! line.

use std::time::Duration;

use futures_util::StreamExt;
use micro::events::{ConsumeOptions, Start, Topics};
use serde_json::{Value, json};

use crate::output::{self, Failure};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Store an event; print its id and sequence.
    Publish {
        /// The topic (dots allowed).
        topic: String,
        /// The event, JSON; `-` reads it from stdin.
        event: String,
        /// The event's id, for deduplication (default: a new one).
        #[arg(long)]
        id: Option<String>,
    },
    /// Consume a topic as a member of a group, printing each event as a
    /// line of JSON and acknowledging it once printed. Events the backend
    /// handed over but that were not printed when it exits (past
    /// `--count`) go back to the group after the ack wait.
    Consume {
        /// The topic.
        topic: String,
        /// The consumer group: its members share the events, and it
        /// resumes where it stopped.
        #[arg(long, default_value = "micro-cli")]
        group: String,
        /// Where a new group starts: `new`, `beginning`, or a sequence.
        #[arg(long, default_value = "new")]
        start: String,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<u64>,
        /// Exit when no event has come for this long (`5s`, …).
        #[arg(long, value_parser = crate::duration)]
        idle: Option<Duration>,
        /// How long an event may go unacknowledged before the group gets
        /// it again (a new group's setting; default 30s).
        #[arg(long, value_parser = crate::duration)]
        ack_wait: Option<Duration>,
    },
}

pub(crate) async fn run(
    backends: &micro::Backends,
    command: Command,
    json: bool,
) -> Result<(), Failure> {
    let topics = Topics::new(backends.events().clone());
    match command {
        Command::Publish { topic, event, id } => {
            let text = crate::call::argument(&event).await?;
            let value: Value = crate::call::parse(&text, "event")?;
            let published = match id {
                Some(id) => topics.publish_with_id(&topic, &id, &value).await?,
                None => topics.publish(&topic, &value).await?,
            };
            if json {
                output::json(&json!({
                    "id": published.id,
                    "sequence": published.sequence,
                    "duplicate": published.duplicate,
                }));
            } else if published.duplicate {
                println!(
                    "already stored as {} (sequence {})",
                    published.id, published.sequence
                );
            } else {
                println!("stored {} (sequence {})", published.id, published.sequence);
            }
            Ok(())
        }
        Command::Consume {
            topic,
            group,
            start,
            count,
            idle,
            ack_wait,
        } => {
            let start = match start.as_str() {
                "new" => Start::New,
                "beginning" => Start::Beginning,
                n => Start::Sequence(n.parse().map_err(|_| {
                    Failure::usage(format!(
                        "--start must be new, beginning or a sequence, not `{n}`"
                    ))
                })?),
            };
            let mut options = ConsumeOptions::group(group).start(start);
            if let Some(wait) = ack_wait {
                options = options.ack_wait(wait);
            }
            let mut deliveries = topics.consume(&topic, options).await?;
            let mut seen = 0u64;
            loop {
                let next = deliveries.next();
                let delivery = match idle {
                    Some(idle) => match tokio::time::timeout(idle, next).await {
                        Ok(d) => d,
                        Err(_) => break,
                    },
                    None => tokio::select! {
                        d = next => d,
                        () = micro::service::shutdown_signal() => break,
                    },
                };
                let Some(delivery) = delivery else { break };
                let delivery = delivery?;
                let event = delivery.event();
                let payload: Value = delivery.decode().unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&event.payload).into_owned())
                });
                let line = json!({
                    "id": event.id,
                    "sequence": delivery.sequence(),
                    "attempt": delivery.attempt(),
                    "payload": payload,
                });
                println!("{line}");
                delivery.ack().await?;
                seen += 1;
                if count.is_some_and(|c| seen >= c) {
                    break;
                }
            }
            Ok(())
        }
    }
}
