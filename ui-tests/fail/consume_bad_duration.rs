// A duration has a unit.
use micro::consume;

#[consume("orders.placed", ack_wait = "30")]
async fn on_order(n: u32) -> micro::Result<()> {
    let _ = n;
    Ok(())
}

fn main() {}
