// A subscriber's payload type must implement Deserialize, so the message
// can be decoded into it.
use micro::{subscribe, Result};

struct Event {
    id: u64,
}

#[subscribe("events")]
async fn on_event(ev: Event) -> Result<()> {
    let _ = ev.id;
    Ok(())
}

fn main() {}
