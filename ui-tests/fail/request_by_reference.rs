// The request is owned: it is decoded for the call and moved into it.
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
    async fn greeting(&self, req: &Request) -> Result<Response> {
        Ok(Response { message: req.name.clone() })
    }
}

fn main() {}
