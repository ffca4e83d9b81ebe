// The check pass reports every mistake, not just the first.
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
    fn one(&self, req: Request) -> Result<Response> {
        Ok(Response { message: req.name })
    }

    #[handler]
    async fn two(self, req: Request) -> Result<Response> {
        Ok(Response { message: req.name })
    }

    #[handler]
    async fn three(&self, req: Request) -> Response {
        Response { message: req.name }
    }
}

fn main() {}
