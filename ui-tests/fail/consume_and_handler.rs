// A method is a handler, a subscriber or a consumer: one of them.
use micro::{consume, handler, service};

struct Svc;

#[service]
impl Svc {
    #[handler]
    #[consume("orders.placed")]
    async fn on_order(&self, n: u32) -> micro::Result<()> {
        let _ = n;
        Ok(())
    }
}

fn main() {}
