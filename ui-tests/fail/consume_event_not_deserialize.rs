// The event type must decode.
use micro::consume;

struct NotSerde;

#[consume("orders.placed")]
async fn on_order(n: NotSerde) -> micro::Result<()> {
    let _ = n;
    Ok(())
}

fn main() {}
