// At least one attempt.
use micro::consume;

#[consume("orders.placed", max_attempts = 0)]
async fn on_order(n: u32) -> micro::Result<()> {
    let _ = n;
    Ok(())
}

fn main() {}
