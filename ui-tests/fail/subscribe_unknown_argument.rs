// #[subscribe] accepts only queue after the topic.
use micro::{subscribe, Result};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Event {
    id: u64,
}

#[subscribe("events", group = "workers")]
async fn on_event(ev: Event) -> Result<()> {
    let _ = ev.id;
    Ok(())
}

fn main() {}
