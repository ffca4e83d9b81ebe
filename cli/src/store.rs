//! `micro store`: the records of one scope of the store `MICRO_STORE`
//! names (a service's own scope is its name).

use std::time::{Duration, SystemTime};

use micro::store::{Query, Record, Scoped};
use serde_json::{Value, json};

use crate::output::{self, Failure};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// List records in key order.
    List {
        #[command(flatten)]
        scope: Scope,
        /// Only keys that start with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Only keys after this one (the last key of the previous page).
        #[arg(long)]
        after: Option<String>,
        /// At most this many records.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Print one record's value.
    Read {
        #[command(flatten)]
        scope: Scope,
        /// The key.
        key: String,
    },
    /// Write a JSON value; print the new version.
    Write {
        #[command(flatten)]
        scope: Scope,
        /// The key.
        key: String,
        /// The value, JSON; `-` reads it from stdin.
        value: String,
        /// Expire the record after this long (`30s`, `1h`).
        #[arg(long, value_parser = crate::duration)]
        ttl: Option<Duration>,
        /// Only if there is no record yet (409 otherwise).
        #[arg(long, conflicts_with = "if_version")]
        if_absent: bool,
        /// Only if the record is at this version (409 otherwise).
        #[arg(long)]
        if_version: Option<u64>,
    },
    /// Delete a record.
    Delete {
        #[command(flatten)]
        scope: Scope,
        /// The key.
        key: String,
    },
}

/// Which scope of the store.
#[derive(Debug, clap::Args)]
pub(crate) struct Scope {
    /// The scope: a service's own records are under its name.
    #[arg(long)]
    scope: String,
}

fn value_of(record: &Record) -> Value {
    record
        .decode::<Value>()
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&record.value).into_owned()))
}

fn seconds_left(record: &Record) -> Option<u64> {
    let at = record.expires_at?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or_default()
            .as_secs(),
    )
}

fn as_json(record: &Record) -> Value {
    json!({
        "key": record.key,
        "version": record.version,
        "value": value_of(record),
        "metadata": record.metadata,
        "expires_in_seconds": seconds_left(record),
    })
}

pub(crate) async fn run(
    backends: &micro::Backends,
    command: Command,
    json: bool,
) -> Result<(), Failure> {
    let open = |scope: &Scope| Scoped::new(backends.store().clone(), &scope.scope);
    match command {
        Command::List {
            scope,
            prefix,
            after,
            limit,
        } => {
            let mut query = Query::prefix(prefix);
            if let Some(after) = after {
                query = query.after(after);
            }
            if let Some(limit) = limit {
                query = query.limit(limit);
            }
            let records = open(&scope)?.list(&query).await?;
            if json {
                output::json(&records.iter().map(as_json).collect::<Vec<_>>());
            } else {
                let rows: Vec<Vec<String>> = records
                    .iter()
                    .map(|r| {
                        let mut value = value_of(r).to_string();
                        if value.chars().count() > 60 {
                            value = value.chars().take(57).collect::<String>() + "...";
                        }
                        let expires =
                            seconds_left(r).map_or_else(|| "-".to_owned(), |s| format!("{s}s"));
                        vec![r.key.clone(), r.version.to_string(), expires, value]
                    })
                    .collect();
                output::table(&["KEY", "VERSION", "EXPIRES", "VALUE"], &rows);
            }
        }
        Command::Read { scope, key } => {
            let record = open(&scope)?.read(&key).await?;
            if json {
                output::json(&as_json(&record));
            } else {
                output::json(&value_of(&record));
            }
        }
        Command::Write {
            scope,
            key,
            value,
            ttl,
            if_absent,
            if_version,
        } => {
            let text = crate::call::argument(&value).await?;
            let value: Value = crate::call::parse(&text, "value")?;
            let store = open(&scope)?;
            let mut write = store.write(&key, &value);
            if let Some(ttl) = ttl {
                write = write.ttl(ttl);
            }
            if if_absent {
                write = write.if_absent();
            }
            if let Some(v) = if_version {
                write = write.if_version(v);
            }
            let version = write.send().await?;
            if json {
                output::json(&json!({ "key": key, "version": version }));
            } else {
                println!("wrote {key} (version {version})");
            }
        }
        Command::Delete { scope, key } => {
            let deleted = open(&scope)?.delete(&key).await?;
            if json {
                output::json(&json!({ "key": key, "deleted": deleted }));
            } else if deleted {
                println!("deleted {key}");
            } else {
                println!("no record {key}");
            }
        }
    }
    Ok(())
}

/// `micro config`: the values of the remote config source
/// (`ConfigBuilder::remote`), the records of scope `config` in the store
/// that `MICRO_CONFIG` and `MICRO_CONFIG_ADDRESS` name. A key is
/// `<prefix><path>`, as `greeter/limits` for `.remote("")` and the setting
/// `greeter.limits`; services watching it reload.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ConfigCommand {
    /// List the values in key order.
    List {
        /// Only keys that start with this.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Print one value.
    Get {
        /// The key.
        key: String,
    },
    /// Set a value (JSON).
    Set {
        /// The key.
        key: String,
        /// The value, JSON; `-` reads it from stdin.
        value: String,
    },
    /// Delete a value.
    Delete {
        /// The key.
        key: String,
    },
}

/// The store the remote config source reads, as a service would choose it.
fn config_store() -> Result<micro::Backends, Failure> {
    let kind = std::env::var("MICRO_CONFIG").map_err(|_| {
        Failure::usage("set MICRO_CONFIG (and MICRO_CONFIG_ADDRESS) to the store the services' remote config reads")
    })?;
    let address = std::env::var("MICRO_CONFIG_ADDRESS").ok();
    Ok(micro::Backends::from_vars(move |name| match name {
        "MICRO_STORE" => Some(kind.clone()),
        "MICRO_STORE_ADDRESS" => address.clone(),
        "MICRO_REGISTRY" => Some("memory".to_owned()),
        _ => None,
    }))
}

pub(crate) async fn config(command: ConfigCommand, json: bool) -> Result<(), Failure> {
    let backends = config_store()?;
    let scope = Scope {
        scope: "config".to_owned(),
    };
    let command = match command {
        ConfigCommand::List { prefix } => Command::List {
            scope,
            prefix,
            after: None,
            limit: None,
        },
        ConfigCommand::Get { key } => Command::Read { scope, key },
        ConfigCommand::Set { key, value } => Command::Write {
            scope,
            key,
            value,
            ttl: None,
            if_absent: false,
            if_version: None,
        },
        ConfigCommand::Delete { key } => Command::Delete { scope, key },
    };
    run(&backends, command, json).await
}
