// The generated client has `new`, `service`, `client` and an `x_with` twin
// for each handler `x`, so handlers cannot take those names.
use micro::{handler, service, Result};

struct Greeter;

#[service]
impl Greeter {
    #[handler]
    async fn client(&self) -> Result<u32> {
        Ok(1)
    }

    #[handler]
    async fn hello(&self) -> Result<u32> {
        Ok(2)
    }

    #[handler]
    async fn hello_with(&self) -> Result<u32> {
        Ok(3)
    }
}

fn main() {}
