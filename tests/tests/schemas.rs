//! JSON Schemas from `#[service]`: the registry record and `GET /schemas`
//! carry the schemas of the types that derive `schemars::JsonSchema`,
//! nested, optional, enum and documented, and a JSON Schema validator
//! agrees with the service on which bodies are valid.

#![cfg(feature = "schemas")]

use micro::{Result, handler, service};
use micro_tests::RawClient;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An order to place.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Order {
    /// What to buy.
    item: String,
    /// How many; one when not given.
    quantity: Option<u32>,
    /// Where it goes.
    address: Address,
    /// How fast.
    speed: Speed,
}

/// A postal address.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Address {
    street: String,
    city: String,
}

/// Delivery speeds.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Speed {
    Standard,
    Express,
}

/// The placed order's id.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Placed {
    id: u64,
}

/// A type with no schema: its endpoint has none, and works the same.
#[derive(Debug, Serialize, Deserialize)]
struct Plain {
    x: u32,
}

struct Shop;

#[service]
impl Shop {
    /// Places an order.
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
}

#[tokio::test]
async fn schemas_from_the_types_in_the_record_and_from_the_service() {
    let backends = micro::Backends::memory();
    let running = micro::Service::new("shop")
        .address("127.0.0.1:0")
        .backends(&backends)
        .handle(Shop)
        .start()
        .await
        .unwrap();
    let record = backends.registry().get_service("shop").await.unwrap();
    let endpoint = |name: &str| {
        record[0]
            .endpoints
            .iter()
            .find(|e| e.name == name)
            .unwrap()
            .clone()
    };
    let place = endpoint("Shop.Place");
    let request = place.request_schema.clone().expect("Order has a schema");
    assert_eq!(request["type"], "object");
    assert_eq!(request["description"], "An order to place.");
    let mut required: Vec<&str> = request["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort_unstable();
    assert_eq!(
        required,
        ["address", "item", "speed"],
        "quantity is optional"
    );
    assert_eq!(request["properties"]["item"]["description"], "What to buy.");
    assert_eq!(
        request["$defs"]["Speed"]["enum"],
        json!(["standard", "express"])
    );
    assert_eq!(
        request["$defs"]["Address"]["required"],
        json!(["street", "city"])
    );
    assert!(place.response_schema.as_ref().unwrap()["properties"]["id"].is_object());
    let plain = endpoint("Shop.Plain");
    assert!(plain.request_schema.is_none() && plain.response_schema.is_none());
    // The handler's doc comment is the endpoint's description; none for
    // one without.
    assert_eq!(
        place.metadata.get("description").map(String::as_str),
        Some("Places an order.")
    );
    assert!(!plain.metadata.contains_key("description"));

    // The service serves the same.
    let raw = RawClient::new()
        .send("GET", running.local_addr(), "/schemas", &[], "")
        .await
        .unwrap();
    assert_eq!(raw.status, 200);
    let served = raw.json();
    assert_eq!(served["service"], "shop");
    let served_place = served["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "Shop.Place")
        .unwrap();
    assert_eq!(served_place["request_schema"], request);

    // The validator and the service agree on which bodies are valid.
    let validator = jsonschema::validator_for(&request).expect("a valid JSON Schema");
    let good = [
        json!({"item": "tea", "address": {"street": "1 Main St", "city": "Oslo"}, "speed": "express"}),
        json!({"item": "tea", "quantity": 3, "address": {"street": "a", "city": "b"}, "speed": "standard"}),
    ];
    let bad = [
        json!({"address": {"street": "a", "city": "b"}, "speed": "express"}),
        json!({"item": "tea", "address": {"street": "a", "city": "b"}, "speed": "slow"}),
        json!({"item": "tea", "quantity": -1, "address": {"street": "a", "city": "b"}, "speed": "express"}),
        json!({"item": "tea", "address": {"street": "a"}, "speed": "express"}),
    ];
    let call = |body: &Value| {
        let body = body.to_string();
        let addr = running.local_addr();
        async move {
            RawClient::new()
                .call(
                    addr,
                    "Shop.Place",
                    &[("content-type", "application/json")],
                    body,
                )
                .await
                .status
                .as_u16()
        }
    };
    for body in &good {
        assert!(validator.is_valid(body), "{body}");
        assert_eq!(call(body).await, 200, "{body}");
    }
    for body in &bad {
        assert!(!validator.is_valid(body), "{body}");
        assert_eq!(call(body).await, 400, "{body}");
    }

    // The OpenAPI document: a path per call, the types' definitions in
    // its components, and the path callable as listed.
    let raw = RawClient::new()
        .send("GET", running.local_addr(), "/openapi.json", &[], "")
        .await
        .unwrap();
    assert_eq!(raw.status, 200);
    let doc = raw.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "shop");
    let op = &doc["paths"]["/Shop.Place"]["post"];
    assert_eq!(op["operationId"], "Shop.Place");
    let body = &op["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(
        body["properties"]["address"]["$ref"],
        "#/components/schemas/Address"
    );
    assert!(body.get("$defs").is_none());
    let components = &doc["components"]["schemas"];
    assert_eq!(components["Speed"]["enum"], json!(["standard", "express"]));
    assert!(components["Address"].is_object() && components["Error"].is_object());
    assert_eq!(
        op["responses"]["default"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Error"
    );
    assert!(doc["paths"]["/Shop.Plain"]["post"].is_object());
    let by_path = RawClient::new()
        .send(
            "POST",
            running.local_addr(),
            "/Shop.Place",
            &[("content-type", "application/json")],
            good[1].to_string(),
        )
        .await
        .unwrap();
    assert_eq!(by_path.status, 200);
    assert_eq!(by_path.json(), json!({"id": 3}));
    let unknown = RawClient::new()
        .send(
            "POST",
            running.local_addr(),
            "/Shop.Nope",
            &[("content-type", "application/json")],
            "{}",
        )
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);
    running.stop().await.unwrap();
}
