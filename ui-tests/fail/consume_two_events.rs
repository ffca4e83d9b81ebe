// One event argument, and an optional `Delivered`.
use micro::consume;
use micro::events::Delivered;

#[consume("orders.placed")]
async fn on_order(a: u32, b: u32, d: Delivered) -> micro::Result<()> {
    let _ = (a, b, d);
    Ok(())
}

fn main() {}
