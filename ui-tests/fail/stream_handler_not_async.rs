// A streaming handler must be an async fn, like every handler.
use micro::{handler, service, Result, Stream};

struct Chat;

#[service]
impl Chat {
    #[handler]
    fn talk(&self, stream: Stream<String, String>) -> Result<()> {
        let _ = stream;
        Ok(())
    }
}

fn main() {}
