// A consumer needs a topic.
use micro::consume;

#[consume]
async fn on_order(n: u32) -> micro::Result<()> {
    let _ = n;
    Ok(())
}

fn main() {}
