// `public` is a flag: it takes no value.
use micro::{handler, service};

struct Menu;

#[service]
impl Menu {
    #[handler(public = true)]
    async fn list(&self) -> micro::Result<Vec<String>> {
        Ok(vec![])
    }
}

fn main() {}
