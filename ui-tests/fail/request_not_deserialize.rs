// A handler's request type must implement Deserialize, so the server can
// decode it.
use micro::{handler, service, Result};
use serde::Serialize;

#[derive(Serialize)]
struct Request {
    name: String,
}

#[derive(Serialize, serde::Deserialize)]
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
