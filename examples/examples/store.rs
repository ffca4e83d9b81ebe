//! Run with: cargo run --example store
//!
//! A todo list that keeps its items in the service's store: in memory by
//! default, in a local directory with `MICRO_STORE=file` (kept across
//! restarts), or in a database with one variable more once the backends
//! are built in:
//!
//! ```text
//! MICRO_STORE=postgres MICRO_STORE_ADDRESS=postgres://postgres@127.0.0.1:5432/test \
//!     cargo run --example store --features store-backends
//! ```
//!
//! Serves on 127.0.0.1:8082 (or `MICRO_SERVER_ADDRESS`):
//!
//! ```text
//! curl -H 'Content-Type: application/json' -H 'Micro-Endpoint: Todo.Add' -d '{"text": "buy milk"}' http://localhost:8082
//! curl -H 'Content-Type: application/json' -H 'Micro-Endpoint: Todo.List' -d '{}' http://localhost:8082
//! curl -H 'Content-Type: application/json' -H 'Micro-Endpoint: Todo.Done' -d '{"id": 1}' http://localhost:8082
//! curl -H 'Content-Type: application/json' -H 'Micro-Endpoint: Todo.Remove' -d '{"id": 1}' http://localhost:8082
//! ```

use micro::store::Query;
use micro::{Context, Error, Result, handler, service};
use serde::{Deserialize, Serialize};

/// One thing to do.
#[derive(Debug, Serialize, Deserialize)]
struct Item {
    id: u64,
    text: String,
    done: bool,
}

#[derive(Serialize, Deserialize)]
struct Add {
    text: String,
}

#[derive(Serialize, Deserialize)]
struct Id {
    id: u64,
}

/// A page of the list: after the item `after`, at most `limit` (50).
#[derive(Serialize, Deserialize)]
struct List {
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Serialize, Deserialize)]
struct Page {
    items: Vec<Item>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<u64>,
}

/// Items are `item/<id>`, the id zero-padded so that key order is id order.
fn key(id: u64) -> String {
    format!("item/{id:012}")
}

struct Todo;

#[service]
impl Todo {
    /// `Todo.Add`: a new item, with the next id.
    #[handler]
    async fn add(&self, ctx: Context, req: Add) -> Result<Item> {
        if req.text.trim().is_empty() {
            return Err(Error::bad_request("an item needs some text"));
        }
        let store = ctx.store()?;
        let id = store
            .update("next-id", |n: Option<u64>| n.unwrap_or(0) + 1)
            .await?;
        let item = Item {
            id,
            text: req.text,
            done: false,
        };
        store.write(&key(id), &item).if_absent().send().await?;
        Ok(item)
    }

    /// `Todo.List`: the items in order, a page at a time.
    #[handler]
    async fn list(&self, ctx: Context, req: List) -> Result<Page> {
        let limit = req.limit.unwrap_or(50).min(500);
        let mut query = Query::prefix("item/").limit(limit + 1);
        if let Some(after) = req.after {
            query = query.after(key(after));
        }
        let records = ctx.store()?.list(&query).await?;
        let mut items = records
            .iter()
            .map(|r| r.decode::<Item>())
            .collect::<Result<Vec<_>>>()?;
        let next = (items.len() > limit).then(|| {
            items.truncate(limit);
            items[limit - 1].id
        });
        Ok(Page { items, next })
    }

    /// `Todo.Done`: marks an item done; 404 if there is none.
    #[handler]
    async fn done(&self, ctx: Context, req: Id) -> Result<Item> {
        let store = ctx.store()?;
        loop {
            let record = store.read(&key(req.id)).await?;
            let mut item: Item = record.decode()?;
            item.done = true;
            // Only over the version read: a concurrent change retries.
            match store
                .write(&key(req.id), &item)
                .if_version(record.version)
                .send()
                .await
            {
                Ok(_) => return Ok(item),
                Err(e) if e.code() == 409 => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// `Todo.Remove`: deletes an item; 404 if there is none.
    #[handler]
    async fn remove(&self, ctx: Context, req: Id) -> Result<Item> {
        let store = ctx.store()?;
        let item: Item = store.get(&key(req.id)).await?;
        store.delete(&key(req.id)).await?;
        Ok(item)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt::init();

    micro::Service::new("todo")
        .address("127.0.0.1:8082")
        .handle(Todo)
        .run()
        .await
}
