// A handler's future must be Send: the server runs it on any thread.
use micro::{handler, service, Result};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Request {
    name: String,
}

#[derive(Serialize, Deserialize)]
struct Response {
    message: String,
}

struct Greeter;

#[service]
impl Greeter {
    #[handler]
    async fn greeting(&self, req: Request) -> Result<Response> {
        let local = std::rc::Rc::new(req.name);
        tokio::task::yield_now().await;
        Ok(Response { message: (*local).clone() })
    }
}

fn main() {}
