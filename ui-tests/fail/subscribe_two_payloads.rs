// A subscriber takes one payload, besides an optional Context.
use micro::{subscribe, Result};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Event {
    id: u64,
}

#[subscribe("events")]
async fn on_event(ev: Event, other: Event) -> Result<()> {
    let _ = (ev.id, other.id);
    Ok(())
}

fn main() {}
