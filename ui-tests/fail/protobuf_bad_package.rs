// A protobuf package is identifiers joined by dots.
use micro::{handler, service};

struct Shop;

#[service(protobuf, package = "acme.shop-v1")]
impl Shop {
    #[handler]
    async fn ping(&self) -> micro::Result<()> {
        Ok(())
    }
}

struct Store;

#[service(protobuf, package = "acme..store")]
impl Store {
    #[handler]
    async fn ping(&self) -> micro::Result<()> {
        Ok(())
    }
}

fn main() {}
