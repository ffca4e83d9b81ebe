// #[subscribe] needs the topic it subscribes to.
use micro::{subscribe, Result};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Event {
    id: u64,
}

#[subscribe]
async fn on_event(ev: Event) -> Result<()> {
    let _ = ev.id;
    Ok(())
}

fn main() {}
