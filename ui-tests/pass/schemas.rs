// Types that derive `schemars::JsonSchema` (nested, optional, an enum,
// doc comments) give their endpoints JSON Schemas; a type that derives
// none leaves its endpoint without one, and compiles the same.
use micro::server::Handler;
use micro::{Result, Stream, handler, service};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An order.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Order {
    /// What to buy.
    item: String,
    /// How many.
    quantity: Option<u32>,
    to: Address,
    speed: Speed,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Address {
    city: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
enum Speed {
    Standard,
    Express,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Placed {
    id: u64,
}

#[derive(Serialize, Deserialize)]
struct Plain {
    x: u32,
}

struct Shop;

#[service]
impl Shop {
    #[handler]
    async fn place(&self, order: Order) -> Result<Placed> {
        Ok(Placed {
            id: u64::from(order.quantity.unwrap_or(1)),
        })
    }

    #[handler]
    async fn plain(&self, p: Plain) -> Result<Plain> {
        Ok(p)
    }

    #[handler]
    async fn follow(&self, mut stream: Stream<Order, Placed>) -> Result<()> {
        while let Some(o) = stream.recv().await? {
            stream.send(Placed { id: u64::from(o.quantity.unwrap_or(1)) }).await?;
        }
        Ok(())
    }

    #[handler]
    async fn count(&self) -> Result<u64> {
        Ok(1)
    }
}

fn main() {
    let endpoints = Shop.endpoints();
    let find = |name: &str| endpoints.iter().find(|e| e.name == name).unwrap();
    let order = find("Shop.Place").request_schema.as_ref().unwrap();
    assert_eq!(order["description"], "An order.");
    assert_eq!(order["properties"]["item"]["description"], "What to buy.");
    assert!(order["$defs"]["Address"].is_object());
    assert!(order["$defs"]["Speed"]["enum"].is_array());
    assert!(find("Shop.Plain").request_schema.is_none());
    assert!(find("Shop.Follow").response_schema.is_some());
    // No request: the schema of `()`; a `u64` reply: an integer.
    assert!(find("Shop.Count").request_schema.is_some());
    assert_eq!(find("Shop.Count").response_schema.as_ref().unwrap()["type"], "integer");
}
