// #[service] goes on an inherent impl block.
use micro::service;
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

trait Greet {
    fn greet(&self);
}

#[service]
impl Greet for Greeter {
    fn greet(&self) {}
}

fn main() {}
