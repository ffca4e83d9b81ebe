// Subscribers: free functions with and without a Context or a queue group,
// a custom error type, and methods inside a #[service] impl.
use micro::{Context, Error, Result, service, subscribe};
use serde::Deserialize;

#[derive(Deserialize)]
struct UserCreated {
    id: u64,
}

#[subscribe("user.created")]
async fn plain(ev: UserCreated) -> Result<()> {
    let _ = ev.id;
    Ok(())
}

#[subscribe("user.created", queue = "auditors")]
async fn with_context(ctx: Context, ev: UserCreated) -> Result<()> {
    let _ = (ctx.id(), ev.id);
    Ok(())
}

#[derive(Debug)]
struct Refused;

impl From<Refused> for Error {
    fn from(_: Refused) -> Self {
        Error::forbidden("refused")
    }
}

#[subscribe("user.deleted")]
async fn custom_error(ev: UserCreated) -> std::result::Result<(), Refused> {
    if ev.id == 0 {
        return Err(Refused);
    }
    Ok(())
}

struct Users;

#[service]
impl Users {
    #[subscribe("user.created", queue = "users")]
    async fn on_created(&self, ctx: Context, ev: UserCreated) -> Result<()> {
        let _ = (ctx.id(), ev.id);
        Ok(())
    }
}

fn main() {
    use micro::server::Handler;
    let subs = std::sync::Arc::new(Users).subscribers();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].topic, "user.created");
    assert_eq!(subs[0].options.queue.as_deref(), Some("users"));
    let statics = micro::broker::static_subscribers();
    assert_eq!(statics.len(), 3);
}
