// A subscriber returns Result<()>: an error reports the failure.
use micro::subscribe;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Event {
    id: u64,
}

#[subscribe("events")]
async fn on_event(ev: Event) {
    let _ = ev.id;
}

fn main() {}
