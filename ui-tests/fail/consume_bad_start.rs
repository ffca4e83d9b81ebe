// The attribute starts a new group at new events or at the beginning.
use micro::consume;

#[consume("orders.placed", start = "yesterday")]
async fn on_order(n: u32) -> micro::Result<()> {
    let _ = n;
    Ok(())
}

fn main() {}
