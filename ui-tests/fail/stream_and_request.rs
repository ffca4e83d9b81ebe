// A handler takes a request or a stream, not both: the first request can
// be the stream's first message.
use micro::{handler, service, Result, Stream};

struct Chat;

#[service]
impl Chat {
    #[handler]
    async fn talk(&self, room: String, stream: Stream<String, String>) -> Result<()> {
        let _ = (room, stream);
        Ok(())
    }
}

fn main() {}
