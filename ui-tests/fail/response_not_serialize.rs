// A handler's response type must implement Serialize, so the server can
// encode it.
use micro::{handler, service, Result};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Request {
    name: String,
}

#[derive(Deserialize)]
struct Response {
    message: String,
}

struct Greeter;

#[service]
impl Greeter {
    #[handler]
    async fn greeting(&self, req: Request) -> Result<Response> {
        Ok(Response { message: req.name })
    }
}

fn main() {}
