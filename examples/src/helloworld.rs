//! The helloworld service: `Helloworld.Greeting` and friends.

use micro::{Context, Error, Result, handler, service};
use serde::{Deserialize, Serialize};

/// The request of `Helloworld.Greeting`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    /// Who to greet.
    pub name: String,
}

/// The reply of `Helloworld.Greeting`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Response {
    /// The greeting.
    pub message: String,
}

/// The helloworld handler. It holds no state; a handler with state keeps it
/// in its fields, shared by every request.
#[derive(Debug, Default)]
pub struct Helloworld;

#[service]
impl Helloworld {
    /// Greets `name`.
    #[handler]
    async fn greeting(&self, req: Request) -> Result<Response> {
        if req.name.is_empty() {
            return Err(Error::bad_request("name must not be empty"));
        }
        Ok(Response {
            message: format!("Hello {}", req.name),
        })
    }

    /// Says who is calling, from the `X-User` metadata, and which request
    /// this is.
    #[handler]
    async fn whoami(&self, ctx: Context, req: Request) -> Result<Response> {
        let user = ctx.metadata().get("x-user").unwrap_or("anonymous");
        Ok(Response {
            message: format!("{} asked as {user} in request {}", req.name, ctx.id()),
        })
    }
}
