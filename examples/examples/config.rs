//! Run with: cargo run --example config [-- path/to/config.toml]
//!
//! A greeter whose greeting and rate limit come from `examples/config.toml`
//! and the environment, reloaded while it serves. Environment variables
//! prefixed `APP_` win over the file (`APP_GREETER__RATE_LIMIT=2`), and
//! flags over both (`--greeter.greeting=Hey`).
//!
//! ```text
//! curl -H 'Content-Type: application/json' -H 'Micro-Endpoint: Greeter.Hello' \
//!      -d '{"name": "alice"}' http://localhost:8090
//! curl -H 'Content-Type: application/json' -H 'Micro-Endpoint: Greeter.Settings' \
//!      -d '{}' http://localhost:8090
//! sed -i 's/^greeting = .*/greeting = "Bonjour"/' examples/config.toml   # taken at once
//! ```
//!
//! More requests a second than `rate_limit` get 429.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use micro::config::{Config, Watched};
use micro::{Error, Result, handler, service};
use serde::{Deserialize, Serialize};

/// The `[greeter]` section.
#[derive(Debug, Deserialize)]
struct Settings {
    greeting: String,
    rate_limit: u64,
}

impl Settings {
    fn check(&self) -> std::result::Result<(), String> {
        if self.greeting.trim().is_empty() {
            return Err("greeting must not be empty".into());
        }
        if self.rate_limit == 0 {
            return Err("rate_limit must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct HelloRequest {
    name: String,
}

#[derive(Serialize, Deserialize)]
struct HelloResponse {
    message: String,
}

#[derive(Serialize, Deserialize)]
struct SettingsResponse {
    greeting: String,
    rate_limit: u64,
    /// Where each value came from.
    from: Vec<String>,
}

struct Greeter {
    config: Config,
    settings: Watched<Settings>,
    /// The current second and how many requests it took.
    window: Arc<(AtomicU64, AtomicU64)>,
}

#[service]
impl Greeter {
    #[handler]
    async fn hello(&self, req: HelloRequest) -> Result<HelloResponse> {
        let settings = self.settings.get();
        self.admit(settings.rate_limit)?;
        Ok(HelloResponse {
            message: format!("{}, {}!", settings.greeting, req.name),
        })
    }

    #[handler]
    async fn settings(&self, _req: serde_json::Value) -> Result<SettingsResponse> {
        let settings = self.settings.get();
        let from = ["greeter.greeting", "greeter.rate_limit"]
            .iter()
            .filter_map(|path| self.config.explain(path))
            .map(|e| e.to_string())
            .collect();
        Ok(SettingsResponse {
            greeting: settings.greeting.clone(),
            rate_limit: settings.rate_limit,
            from,
        })
    }
}

impl Greeter {
    /// Takes one request of this second's `limit`, or refuses it.
    fn admit(&self, limit: u64) -> Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (second, taken) = &*self.window;
        if second.swap(now, Ordering::AcqRel) != now {
            taken.store(0, Ordering::Release);
        }
        if taken.fetch_add(1, Ordering::AcqRel) >= limit {
            return Err(Error::too_many_requests(format!(
                "more than {limit} requests a second; try again shortly"
            )));
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt::init();

    let mut args = std::env::args().skip(1).peekable();
    let file = match args.peek() {
        Some(a) if !a.starts_with("--") => args.next().unwrap_or_default(),
        _ => concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml").to_owned(),
    };
    let config = Config::builder()
        .set_default("greeter.greeting", "Hello")
        .set_default("greeter.rate_limit", 10)
        .file(&file)
        .env("APP")
        .args(args)
        .load()
        .await?;
    print!("{config}");

    let settings = config.watch_validated("greeter", Settings::check)?;
    let mut changes = settings.clone();
    tokio::spawn(async move {
        loop {
            let s = changes.changed().await;
            println!(
                "settings now: greeting {:?}, rate limit {}",
                s.greeting, s.rate_limit
            );
        }
    });
    let mut errors = config.errors();
    tokio::spawn(async move {
        while let Ok(e) = errors.recv().await {
            println!("config refused, keeping the last good settings: {e}");
        }
    });

    micro::Service::new("greeter")
        .config(&config)
        .handle(Greeter {
            config: config.clone(),
            settings,
            window: Arc::default(),
        })
        .run()
        .await
}
