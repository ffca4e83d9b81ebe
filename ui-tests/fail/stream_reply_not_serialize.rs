// The replies of a server-streaming handler must encode and decode.
use micro::{handler, service, Result, Streaming};

struct NotSerde;

struct Ticker;

#[service]
impl Ticker {
    #[handler]
    async fn ticks(&self, every_ms: u64) -> Result<Streaming<NotSerde>> {
        let _ = every_ms;
        Ok(Streaming::empty())
    }
}

fn main() {}
