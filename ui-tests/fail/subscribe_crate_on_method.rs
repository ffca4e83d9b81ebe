// A subscriber method takes its `crate` from its `#[service]`.
use micro::{service, subscribe};

struct Svc;

#[service]
impl Svc {
    #[subscribe("events", crate = "::micro")]
    async fn on_event(&self, n: u32) -> micro::Result<()> {
        let _ = n;
        Ok(())
    }
}

fn main() {}
