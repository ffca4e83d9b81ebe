// A handler that takes a `Stream<Req, Rsp>` sends its replies on the
// stream, so it returns `Result<()>`.
use micro::{handler, service, Result, Stream};

struct Chat;

#[service]
impl Chat {
    #[handler]
    async fn talk(&self, stream: Stream<String, String>) -> Result<String> {
        let _ = stream;
        Ok(String::new())
    }
}

fn main() {}
