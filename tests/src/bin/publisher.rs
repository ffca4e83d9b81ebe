//! A process that publishes as soon as it starts: `PUB_COUNT` numbers
//! (default 5) from `PUB_FIRST` (default 0) to `PUB_TOPIC`, through the
//! default registry and broker, with a fresh client, in its first
//! millisecond. Prints `delivered <n>` for each publish (`delivered ?`
//! where the broker cannot tell), or `failed <code> <detail>`.

fn number(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .map_or(default, |v| v.parse().expect("a number"))
}

#[tokio::main]
async fn main() {
    let topic = std::env::var("PUB_TOPIC").unwrap_or_else(|_| "events".to_owned());
    let first = number("PUB_FIRST", 0);
    let count = number("PUB_COUNT", 5);
    let client = micro::Client::new();
    for n in first..first + count {
        match client.publish(&topic, &n).await {
            Ok(published) => match published.delivered {
                Some(d) => println!("delivered {d}"),
                None => println!("delivered ?"),
            },
            Err(e) => println!("failed {} {}", e.code(), e.detail()),
        }
    }
}
