// A handler cannot be generic: its request type must be known.
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
    async fn greeting<T: Send>(&self, req: Request) -> Result<Response> {
        Ok(Response { message: req.name })
    }
}

fn main() {}
