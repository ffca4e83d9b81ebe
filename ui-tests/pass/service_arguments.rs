// `name` sets the handler name; `crate` points at a renamed micro, on a
// `#[service]` and on a free `#[subscribe]`.
extern crate micro as renamed_micro;

use renamed_micro::{handler, service, subscribe};

#[subscribe("audit", queue = "auditors", crate = "::renamed_micro")]
async fn audit(n: u32) -> renamed_micro::Result<()> {
    let _ = n;
    Ok(())
}

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
    let subscribers = renamed_micro::broker::static_subscribers();
    assert!(subscribers.iter().any(|s| s.topic == "audit"));
}
