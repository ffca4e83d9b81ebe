// Every accepted handler shape: with and without a Context, with and
// without a request, a custom error type, a custom endpoint name, plain
// methods left alone, and paths through `micro::`.
use micro::{Context, Error, handler, service};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Request {
    name: String,
}

#[derive(Serialize, Deserialize)]
struct Response {
    message: String,
}

#[derive(Debug)]
struct MyError;

impl From<MyError> for Error {
    fn from(_: MyError) -> Self {
        Error::bad_request("mine")
    }
}

struct Greeter {
    greeting: String,
}

#[service]
impl Greeter {
    /// Docs are copied to the client.
    #[handler]
    async fn greeting(&self, req: Request) -> micro::Result<Response> {
        Ok(Response { message: self.message(&req.name) })
    }

    #[handler]
    async fn with_context(&self, ctx: Context, req: Request) -> micro::Result<Response> {
        Ok(Response { message: format!("{} {}", req.name, ctx.id()) })
    }

    #[handler]
    async fn context_last(&self, req: Request, ctx: micro::Context) -> micro::Result<Response> {
        Ok(Response { message: format!("{} {}", req.name, ctx.id()) })
    }

    #[handler]
    async fn no_request(&self) -> micro::Result<Vec<String>> {
        Ok(vec![self.greeting.clone()])
    }

    #[handler(name = "Custom")]
    async fn renamed(&self, req: Request) -> Result<Response, MyError> {
        if req.name.is_empty() {
            return Err(MyError);
        }
        Ok(Response { message: req.name })
    }

    #[micro::handler]
    async fn full_path(&self, n: u64) -> micro::Result<u64> {
        Ok(n + 1)
    }

    fn message(&self, name: &str) -> String {
        format!("{} {name}", self.greeting)
    }
}

fn endpoints() -> Vec<String> {
    use micro::server::Handler;
    let g = Greeter { greeting: "hi".into() };
    g.endpoints().into_iter().map(|e| e.name).collect()
}

async fn client_compiles(client: GreeterClient) -> micro::Result<()> {
    let _: Response = client.greeting(Request { name: "a".into() }).await?;
    let _: Response = client.with_context(Request { name: "a".into() }).await?;
    let _: Vec<String> = client.no_request().await?;
    let _: Response = client
        .renamed_with(Request { name: "a".into() }, micro::client::CallOptions::new())
        .await?;
    let _: u64 = client.full_path(1).await?;
    Ok(())
}

fn main() {
    assert_eq!(
        endpoints(),
        [
            "Greeter.Greeting",
            "Greeter.WithContext",
            "Greeter.ContextLast",
            "Greeter.NoRequest",
            "Greeter.Custom",
            "Greeter.FullPath",
        ]
    );
    let _ = client_compiles;
}
