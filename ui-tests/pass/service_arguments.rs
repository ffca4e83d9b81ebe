// `name` sets the handler name; `crate` points at a renamed micro.
extern crate micro as renamed_micro;

use renamed_micro::{handler, service};

struct Impl;

#[service(name = "Public", crate = "::renamed_micro")]
impl Impl {
    #[handler]
    async fn ping(&self, n: u32) -> renamed_micro::Result<u32> {
        Ok(n)
    }
}

fn main() {
    use renamed_micro::server::Handler;
    assert_eq!(Impl.name(), "Public");
    assert_eq!(Impl.endpoints()[0].name, "Public.Ping");
    let _ = ImplClient::new("public", renamed_micro::Client::new());
}
