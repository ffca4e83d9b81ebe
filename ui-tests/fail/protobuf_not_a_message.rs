// A `#[service(protobuf)]` takes and returns protobuf messages: a serde
// type that does not implement `prost::Message` is reported at the type.
use micro::{handler, service};

#[derive(serde::Serialize, serde::Deserialize)]
struct Order {
    item: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Placed {
    #[prost(uint64, tag = "1")]
    id: u64,
}

struct Shop;

#[service(protobuf, package = "shop")]
impl Shop {
    #[handler]
    async fn place(&self, order: Order) -> micro::Result<Placed> {
        Ok(Placed { id: order.item.len() as u64 })
    }

    #[handler]
    async fn last(&self) -> micro::Result<Order> {
        Ok(Order { item: String::new() })
    }
}

fn main() {}
