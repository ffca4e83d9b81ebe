// #[handler] only means something inside a #[service] impl block.
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

impl Greeter {
    #[handler]
    async fn greeting(&self, req: Request) -> Result<Response> {
        Ok(Response { message: req.name })
    }
}

#[service]
impl Greeter {}

fn main() {}
