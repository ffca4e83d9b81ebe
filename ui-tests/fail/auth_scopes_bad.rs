// An empty list lets nobody in; a scope is a name without spaces.
use micro::{handler, service};

struct Orders;

#[service]
impl Orders {
    #[handler(scopes = [])]
    async fn place(&self) -> micro::Result<()> {
        Ok(())
    }

    #[handler(scopes = ["orders write"])]
    async fn cancel(&self) -> micro::Result<()> {
        Ok(())
    }

    #[handler(scopes = ["*"])]
    async fn list(&self) -> micro::Result<()> {
        Ok(())
    }
}

fn main() {}
