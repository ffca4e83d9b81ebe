// Every signature error at once: not async, no event, not a Result.
use micro::consume;

#[consume("orders.placed")]
fn on_order() -> u32 {
    1
}

fn main() {}
