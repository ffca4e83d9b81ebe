//! Loads a config from the process's environment (prefix `APP`) and its
//! flags, and prints what it read: for the config tests, which cannot set
//! their own environment safely.

use micro::config::Config;

#[tokio::main(flavor = "current_thread")]
async fn main() -> micro::Result<()> {
    let config = Config::builder()
        .set_default("database.max_conns", 10)
        .env("APP")
        .args(std::env::args().skip(1))
        .load()
        .await?;
    println!("{}", config.redacted());
    for path in ["database.max_conns", "log_level", "server.port"] {
        if let Some(e) = config.explain(path) {
            println!("{e}");
        }
    }
    let conns: u32 = config.get("database.max_conns")?;
    println!("max_conns {conns}");
    Ok(())
}
