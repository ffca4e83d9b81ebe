// Scopes are a list of string literals.
use micro::{handler, service};

struct Orders;

#[service]
impl Orders {
    #[handler(scopes = "orders:write")]
    async fn place(&self) -> micro::Result<()> {
        Ok(())
    }

    #[handler(scopes = [write])]
    async fn cancel(&self) -> micro::Result<()> {
        Ok(())
    }
}

fn main() {}
