// A `#[service(protobuf)]` with messages that derive serde too, a
// protobuf-only message, the empty message and no request; without a
// package, and with `crate` and `name` beside it.
use micro::{handler, service};

#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
struct Hello {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Ping {
    #[prost(int64, tag = "1")]
    n: i64,
}

struct Greeter;

#[service(protobuf, package = "acme.greeter.v1")]
impl Greeter {
    #[handler]
    async fn hello(&self, hello: Hello) -> micro::Result<Hello> {
        Ok(hello)
    }

    #[handler]
    async fn ping(&self, ctx: micro::Context, ping: Ping) -> micro::Result<Ping> {
        let _ = ctx.id();
        Ok(ping)
    }

    #[handler]
    async fn nothing(&self) -> micro::Result<()> {
        Ok(())
    }
}

struct Pinger;

#[service(protobuf, name = "Pinger2", crate = "::micro")]
impl Pinger {
    #[handler]
    async fn ping(&self, ping: Ping) -> Result<Ping, micro::Error> {
        Ok(ping)
    }
}

#[allow(dead_code)]
async fn calls(greeter: GreeterClient, pinger: PingerClient) -> micro::Result<()> {
    let _: Hello = greeter.hello(Hello { name: "a".into() }).await?;
    let _: Ping = greeter
        .ping_with(Ping { n: 1 }, micro::client::CallOptions::new())
        .await?;
    greeter.nothing().await?;
    let _: Ping = pinger.ping(Ping { n: 2 }).await?;
    Ok(())
}

fn main() {}
