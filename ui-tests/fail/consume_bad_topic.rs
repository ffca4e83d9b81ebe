// A topic is dot-separated words, the same on every backend.
use micro::consume;

#[consume("orders..placed")]
async fn on_order(n: u32) -> micro::Result<()> {
    let _ = n;
    Ok(())
}

fn main() {}
