// Unknown arguments are named, with the ones that exist.
use micro::consume;

#[consume("orders.placed", queue = "billing")]
async fn on_order(n: u32) -> micro::Result<()> {
    let _ = n;
    Ok(())
}

fn main() {}
