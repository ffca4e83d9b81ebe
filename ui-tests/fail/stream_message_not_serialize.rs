// The messages of a stream must encode and decode on both sides.
use micro::{handler, service, Result, Stream};

struct NotSerde;

struct Chat;

#[service]
impl Chat {
    #[handler]
    async fn talk(&self, stream: Stream<NotSerde, String>) -> Result<()> {
        let _ = stream;
        Ok(())
    }
}

fn main() {}
