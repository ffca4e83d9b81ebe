// A streaming handler takes one stream: a `Stream<Req, Rsp>` already
// carries both directions.
use micro::{handler, service, Result, Stream, Streaming};

struct Chat;

#[service]
impl Chat {
    #[handler]
    async fn talk(&self, stream: Stream<String, String>, more: Streaming<String>) -> Result<()> {
        let _ = (stream, more);
        Ok(())
    }
}

fn main() {}
