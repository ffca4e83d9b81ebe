//! `micro`: the command line of micro, a client of its public API.
//!
//! It finds services the way services do: the registry, broker, store and
//! events backends come from the same `MICRO_<PART>` and
//! `MICRO_<PART>_ADDRESS` variables (or `MICRO_PROFILE`), and
//! `--registry`/`--registry-address` set the registry's for one run.
//!
//! Output is a table for people, or JSON with `--json`. Exit codes: 0 done;
//! 1 the command failed (the error JSON's detail is printed); 2 bad usage
//! or input; 3 not found (no such service, endpoint or record); 4
//! unavailable (a registry, backend or service that cannot be reached, or
//! a timeout).

mod call;
mod events;
mod gateway;
mod new;
mod output;
mod pubsub;
mod registry;
mod store;

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::output::Failure;

/// The micro command line: services, calls, events and records.
#[derive(Debug, Parser)]
#[command(name = "micro", version, about, long_about = None)]
struct Cli {
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// The registry: mdns, memory, nats or etcd (default: `MICRO_REGISTRY`,
    /// else mdns).
    #[arg(long, global = true, value_name = "KIND")]
    registry: Option<String>,
    /// The registry's server (default: `MICRO_REGISTRY_ADDRESS`).
    #[arg(long, global = true, value_name = "URL")]
    registry_address: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the registered services.
    Services,
    /// Show a service's versions, endpoints and nodes.
    Describe {
        /// The service's name.
        service: String,
    },
    /// Call an endpoint with a JSON request; print the reply.
    Call {
        /// The service's name.
        service: String,
        /// The endpoint, `Type.Method`.
        endpoint: String,
        /// The request as JSON; `-` reads it from stdin (default: `{}`).
        request: Option<String>,
        #[command(flatten)]
        options: call::Options,
    },
    /// Open a stream: each line of stdin (JSON) is sent, each reply printed
    /// as a line of JSON.
    Stream {
        /// The service's name.
        service: String,
        /// The endpoint, `Type.Method`.
        endpoint: String,
        #[command(flatten)]
        options: call::Options,
    },
    /// Publish a JSON message to a topic through the broker.
    Publish {
        /// The topic.
        topic: String,
        /// The message, JSON; `-` reads it from stdin.
        message: String,
    },
    /// Subscribe to a topic and print each message as a line of JSON.
    Subscribe {
        /// The topic.
        topic: String,
        /// Share the topic's messages with the queue group's other members.
        #[arg(long)]
        queue: Option<String>,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Print a service's OpenAPI 3.1 document (from one of its nodes).
    Openapi {
        /// The service's name.
        service: String,
    },
    /// Ask every node of a service for its health.
    Health {
        /// The service's name.
        service: String,
    },
    /// Make a new service crate that builds and whose tests pass.
    New(new::Args),
    /// Read and write records of a store scope (`MICRO_STORE`).
    #[command(subcommand)]
    Store(store::Command),
    /// Read and set the remote config source's values (`MICRO_CONFIG`).
    #[command(subcommand)]
    Config(store::ConfigCommand),
    /// Publish and consume durable events (`MICRO_EVENTS`).
    #[command(subcommand)]
    Events(events::Command),
    /// Serve an HTTP API, a dashboard and an MCP server in front of every
    /// service.
    Gateway(gateway::Args),
}

/// A duration such as `500ms`, `10s`, `2m` or `1h`.
pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 500ms, 10s or 2m"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(format!("`{text}`: the unit must be ms, s, m or h")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// The backends the environment and the flags choose.
fn backends(cli: &Cli) -> micro::Backends {
    let mut set: HashMap<&'static str, String> = HashMap::new();
    if let Some(r) = &cli.registry {
        set.insert("MICRO_REGISTRY", r.clone());
    }
    if let Some(a) = &cli.registry_address {
        set.insert("MICRO_REGISTRY_ADDRESS", a.clone());
    }
    micro::Backends::from_vars(move |name| {
        set.get(name).cloned().or_else(|| std::env::var(name).ok())
    })
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let json = cli.json;
    let backends = backends(&cli);
    match cli.command {
        Command::Services => registry::services(&backends, json).await,
        Command::Describe { service } => registry::describe(&backends, &service, json).await,
        Command::Health { service } => registry::health(&backends, &service, json).await,
        Command::Openapi { service } => registry::openapi(&backends, &service).await,
        Command::Call {
            service,
            endpoint,
            request,
            options,
        } => call::call(&backends, &service, &endpoint, request.as_deref(), &options).await,
        Command::Stream {
            service,
            endpoint,
            options,
        } => call::stream(&backends, &service, &endpoint, &options).await,
        Command::Publish { topic, message } => {
            pubsub::publish(&backends, &topic, &message, json).await
        }
        Command::Subscribe {
            topic,
            queue,
            count,
        } => pubsub::subscribe(&backends, &topic, queue, count).await,
        Command::New(args) => new::run(&args, json),
        Command::Store(command) => store::run(&backends, command, json).await,
        Command::Events(command) => events::run(&backends, command, json).await,
        Command::Config(command) => store::config(command, json).await,
        Command::Gateway(args) => gateway::run(&backends, &args).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("micro: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert!(duration("soon").is_err());
        assert!(duration("5d").is_err());
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
