// The generated code uses absolute paths only: it compiles without the
// prelude, and with user items that shadow common names.
#![no_implicit_prelude]

extern crate micro;
extern crate serde;
extern crate std;

#[derive(serde::Serialize, serde::Deserialize)]
struct Request {
    name: ::std::string::String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Response {
    message: ::std::string::String,
}

// Shadow names that sloppy generated code would use.
#[allow(dead_code)]
struct Box;
#[allow(dead_code)]
struct Arc;
#[allow(dead_code)]
struct Vec;
#[allow(dead_code)]
struct Result;
#[allow(dead_code)]
struct Ok;
#[allow(dead_code)]
struct Err;
#[allow(dead_code)]
struct Option;

struct Greeter;

#[micro::service]
impl Greeter {
    #[micro::handler]
    async fn greeting(&self, ctx: micro::Context, req: Request) -> micro::Result<Response> {
        let _ = ctx;
        ::std::result::Result::Ok(Response { message: req.name })
    }
}

fn main() {
    let _ = GreeterClient::new("greeter", micro::Client::new());
}
