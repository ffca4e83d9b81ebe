// Every streaming shape, with and without a Context, by full path and
// imported, with a custom error type.
use micro::{handler, service, Context, Result, Stream, Streaming};

#[derive(Debug)]
struct Oops;

impl From<Oops> for micro::Error {
    fn from(_: Oops) -> Self {
        micro::Error::internal("oops")
    }
}

struct Shapes;

#[service]
impl Shapes {
    #[handler]
    async fn bidi(&self, mut s: Stream<String, u32>) -> Result<()> {
        while let Some(text) = s.recv().await? {
            s.send(text.len() as u32).await?;
        }
        Ok(())
    }

    #[handler]
    async fn bidi_ctx(&self, s: micro::Stream<u8, u8>, ctx: Context) -> std::result::Result<(), Oops> {
        let _ = (s, ctx);
        Ok(())
    }

    #[handler]
    async fn upload(&self, ctx: Context, mut n: Streaming<i64>) -> Result<i64> {
        let _ = ctx;
        let mut total = 0;
        while let Some(x) = n.recv().await? {
            total += x;
        }
        Ok(total)
    }

    #[handler]
    async fn server(&self, from: u32) -> Result<Streaming<u32>> {
        Ok(Streaming::iter(from..from + 3))
    }

    #[handler]
    async fn server_no_request(&self, ctx: Context) -> Result<micro::Streaming<String>> {
        Ok(Streaming::iter([ctx.id().to_owned()]))
    }

    #[handler]
    async fn both(&self, n: Streaming<u64>) -> Result<Streaming<u64>> {
        Ok(n)
    }

    #[handler]
    async fn unary(&self, n: u64) -> Result<u64> {
        Ok(n)
    }
}

#[allow(dead_code)]
async fn client_types(c: ShapesClient) -> Result<()> {
    let _: micro::client::ClientStream<String, u32> = c.bidi().await?;
    let _: micro::client::ClientStream<u8, u8> = c.bidi_ctx().await?;
    let _: micro::client::ClientStream<i64, i64> = c.upload().await?;
    let _: Streaming<u32> = c.server(1).await?;
    let _: Streaming<String> = c.server_no_request().await?;
    let _: micro::client::ClientStream<u64, u64> = c.both().await?;
    let _: u64 = c.unary(1).await?;
    Ok(())
}

fn main() {}
