// A handler takes &self, not &mut self: requests run concurrently.
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
    async fn greeting(&mut self, req: Request) -> Result<Response> {
        Ok(Response { message: req.name })
    }
}

fn main() {}
