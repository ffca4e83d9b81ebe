// A subscriber must be an async fn.
use micro::{subscribe, Result};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Event {
    id: u64,
}

#[subscribe("events")]
fn on_event(ev: Event) -> Result<()> {
    let _ = ev.id;
    Ok(())
}

fn main() {}
