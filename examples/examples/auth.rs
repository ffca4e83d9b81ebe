//! Run with: cargo run --example auth
//!
//! Two services with auth on. `shop` issues tokens (it serves
//! `Auth.Token` and its JWKS document); `kitchen` only verifies them, with
//! shop's JWKS URL. `Shop.Menu` is public; `Shop.Order` needs the scope
//! `orders:write`, and calls `Kitchen.Cook` with shop's own identity on
//! the user's behalf. At start the example makes the account `alice` and
//! prints its secret.
//!
//! ```text
//! curl -H 'Content-Type: application/json' -H 'Micro-Endpoint: Shop.Menu' -d '{}' http://localhost:8094
//! curl -H 'Content-Type: application/json' -H 'Micro-Endpoint: Shop.Order' -d '"tea"' http://localhost:8094   # 401
//! TOKEN=$(curl -s -H 'Content-Type: application/json' -H 'Micro-Endpoint: Auth.Token' \
//!      -d '{"id": "alice", "secret": "<the secret printed>"}' http://localhost:8094 | jq -r .access)
//! curl -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -H 'Micro-Endpoint: Shop.Order' \
//!      -d '"tea"' http://localhost:8094
//! ```

use micro::auth::{AccountKind, Auth};
use micro::client::CallOptions;
use micro::{Backends, Client, Context, Error, Result, handler, service};
use serde::{Deserialize, Serialize};

/// What the kitchen made, and for whom.
#[derive(Debug, Serialize, Deserialize)]
struct Dish {
    item: String,
    cooked_by: String,
    /// The service that asked.
    ordered_through: String,
    /// The user it asked for.
    ordered_for: String,
}

struct Shop {
    kitchen: KitchenClient,
}

#[service]
impl Shop {
    /// Anyone may read the menu.
    #[handler(public)]
    async fn menu(&self) -> Result<Vec<String>> {
        Ok(vec!["tea".into(), "coffee".into()])
    }

    /// Orders need `orders:write`.
    #[handler(scopes = ["orders:write"])]
    async fn order(&self, ctx: Context, item: String) -> Result<Dish> {
        if item != "tea" && item != "coffee" {
            return Err(Error::bad_request(format!("{item} is not on the menu")));
        }
        self.kitchen.cook_with(item, CallOptions::from(&ctx)).await
    }
}

struct Kitchen;

#[service]
impl Kitchen {
    /// Only services: the shop's identity has the scope `service`.
    #[handler(scopes = ["service"])]
    async fn cook(&self, ctx: Context, item: String) -> Result<Dish> {
        let name = |a: Option<&micro::auth::Account>| a.map_or("nobody".into(), |a| a.id.clone());
        Ok(Dish {
            item,
            cooked_by: "kitchen".into(),
            ordered_through: name(ctx.account()),
            ordered_for: name(ctx.caller()),
        })
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt::init();
    // Both in this process, on a memory registry: nothing on the network
    // but the two ports.
    let backends = Backends::memory();

    let auth = Auth::issuer("shop").build()?;
    let (alice, secret) = auth
        .generate("alice", AccountKind::User, &["orders:write"])
        .await?;
    println!("account {} with secret {secret}", alice.id);

    let shop = micro::Service::new("shop")
        .address("127.0.0.1:8094")
        .backends(&backends)
        .auth(auth)
        .handle(Shop {
            kitchen: KitchenClient::new("kitchen", Client::builder().backends(&backends).build()),
        })
        .start()
        .await?;
    let jwks = format!("http://127.0.0.1:8094{}", micro::auth::JWKS_PATH);
    let kitchen = micro::Service::new("kitchen")
        .address("127.0.0.1:8095")
        .backends(&backends)
        .auth(Auth::verifier(jwks).build()?)
        .handle(Kitchen)
        .start()
        .await?;
    println!("shop on 127.0.0.1:8094, kitchen on 127.0.0.1:8095; Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    kitchen.stop().await?;
    shop.stop().await
}
