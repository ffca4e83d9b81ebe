// A handler returns Result<T>, not ().
use micro::{handler, service};
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
    async fn greeting(&self, req: Request) {
        let _ = req;
    }
}

fn main() {}
