// `package` needs `protobuf`; `protobuf` is a flag and takes no value.
use micro::{handler, service};

struct Shop;

#[service(package = "shop")]
impl Shop {
    #[handler]
    async fn ping(&self) -> micro::Result<()> {
        Ok(())
    }
}

struct Store;

#[service(protobuf = true)]
impl Store {
    #[handler]
    async fn ping(&self) -> micro::Result<()> {
        Ok(())
    }
}

fn main() {}
