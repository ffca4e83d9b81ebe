// An endpoint is public or scoped, not both; nor twice either.
use micro::{handler, service};

#[service(public, scopes = ["x"])]
impl Orders {
    #[handler(public, scopes = ["orders:write"])]
    async fn place(&self) -> micro::Result<()> {
        Ok(())
    }

    #[handler(public, public)]
    async fn menu(&self) -> micro::Result<()> {
        Ok(())
    }
}

struct Orders;

fn main() {}
