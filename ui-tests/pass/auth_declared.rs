// Access declared in the DSL shows in the endpoint metadata; a handler's
// own declaration wins over its service's.
use micro::server::Handler;
use micro::{handler, service};

struct Orders;

#[service(scopes = ["orders:read"])]
impl Orders {
    #[handler(public)]
    async fn menu(&self) -> micro::Result<Vec<String>> {
        Ok(vec![])
    }

    #[handler(scopes = ["orders:write", "orders:admin"])]
    async fn place(&self) -> micro::Result<()> {
        Ok(())
    }

    #[handler]
    async fn history(&self) -> micro::Result<()> {
        Ok(())
    }
}

struct Open;

#[service(public)]
impl Open {
    #[handler(name = "Get")]
    async fn get(&self) -> micro::Result<()> {
        Ok(())
    }
}

fn main() {
    let endpoints = Orders.endpoints();
    let meta = |name: &str| {
        endpoints
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.metadata.clone())
            .unwrap()
    };
    assert_eq!(meta("Orders.Menu").get("auth").map(String::as_str), Some("public"));
    assert_eq!(
        meta("Orders.Place").get("scopes").map(String::as_str),
        Some("orders:write,orders:admin")
    );
    assert_eq!(meta("Orders.History").get("scopes").map(String::as_str), Some("orders:read"));
    assert_eq!(Open.endpoints()[0].metadata.get("auth").map(String::as_str), Some("public"));
}
