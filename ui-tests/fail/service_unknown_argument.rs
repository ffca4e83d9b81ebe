// #[service] accepts only name and crate.
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

#[service(nmae = "Hello")]
impl Greeter {
    #[handler]
    async fn greeting(&self, req: Request) -> Result<Response> {
        Ok(Response { message: req.name })
    }
}

fn main() {}
