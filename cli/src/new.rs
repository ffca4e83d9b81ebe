//! `micro new`: a service crate that builds, runs and passes its test as
//! generated.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::output::{self, Failure};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The service's name, which is also the crate's: lowercase letters,
    /// digits, `-` and `_`, starting with a letter.
    name: String,
    /// Where to make the crate (default: `./<name>`).
    #[arg(long)]
    path: Option<PathBuf>,
    /// The micro dependency: a path to micro's crate, or a version
    /// requirement (default: the micro this CLI was built from).
    #[arg(long, value_name = "PATH|VERSION")]
    micro: Option<String>,
}

/// `snake-or_kebab` as `CamelCase`.
fn camel(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut chars = p.chars();
            chars.next().map_or_else(String::new, |c| {
                c.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

fn check(name: &str) -> Result<(), Failure> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64;
    if ok {
        Ok(())
    } else {
        Err(Failure::usage(format!(
            "`{name}` cannot name a service crate: use lowercase letters, digits, - and _, starting with a letter"
        )))
    }
}

/// The `micro = …` line of the new crate's manifest.
fn dependency(micro: Option<&str>) -> String {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../micro");
    match micro {
        Some(v) if v.starts_with(|c: char| c.is_ascii_digit() || "=^~<>*".contains(c)) => {
            format!("micro = \"{v}\"")
        }
        Some(path) => format!("micro = {{ path = {} }}", toml_string(path)),
        None => {
            let path = built_from.canonicalize().unwrap_or(built_from);
            format!(
                "micro = {{ path = {} }}",
                toml_string(&path.to_string_lossy())
            )
        }
    }
}

fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

pub(crate) fn run(args: &Args, json: bool) -> Result<(), Failure> {
    check(&args.name)?;
    let dir = args
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists()
        && dir
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(Failure::usage(format!(
            "{} exists and is not empty",
            dir.display()
        )));
    }
    let name = &args.name;
    let ty = camel(name);
    let files = [
        (
            "Cargo.toml",
            manifest(name, &dependency(args.micro.as_deref())),
        ),
        ("src/main.rs", main_rs(name, &ty)),
        ("README.md", readme(name, &ty)),
        (".gitignore", "/target\n".to_owned()),
    ];
    for (file, text) in &files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Failure::usage(format!("making {}: {e}", parent.display())))?;
        }
        std::fs::write(&path, text)
            .map_err(|e| Failure::usage(format!("writing {}: {e}", path.display())))?;
    }
    if json {
        output::json(&json!({
            "name": name,
            "path": dir,
            "files": files.iter().map(|(f, _)| f).collect::<Vec<_>>(),
        }));
    } else {
        println!("made the service {name} in {}", dir.display());
        println!("  cd {} && cargo test && cargo run", dir.display());
    }
    Ok(())
}

fn manifest(name: &str, micro: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
{micro}
serde = {{ version = "1", features = ["derive"] }}
tokio = {{ version = "1", features = ["macros", "rt-multi-thread"] }}

# A workspace of its own, so that it builds wherever it is made.
[workspace]
"#
    )
}

fn main_rs(name: &str, ty: &str) -> String {
    format!(
        r#"//! The {name} service.
//!
//! Run it with `cargo run`, then call it:
//!
//! ```text
//! micro call {name} {ty}.Hello '{{"name": "alice"}}'
//! curl -H 'Content-Type: application/json' -H 'Micro-Endpoint: {ty}.Hello' \
//!      -d '{{"name": "alice"}}' http://127.0.0.1:8080
//! ```

use micro::{{Error, Result, handler, service}};
use serde::{{Deserialize, Serialize}};

/// The request of `{ty}.Hello`.
#[derive(Debug, Deserialize, Serialize)]
pub struct HelloRequest {{
    /// Who to greet.
    pub name: String,
}}

/// The reply of `{ty}.Hello`.
#[derive(Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct HelloResponse {{
    /// The greeting.
    pub message: String,
}}

/// The service's handler; its fields are its state.
#[derive(Debug, Default)]
pub struct {ty};

#[service]
impl {ty} {{
    /// Greets `name`.
    #[handler]
    async fn hello(&self, req: HelloRequest) -> Result<HelloResponse> {{
        if req.name.is_empty() {{
            return Err(Error::bad_request("name must not be empty"));
        }}
        Ok(HelloResponse {{
            message: format!("Hello {{}}", req.name),
        }})
    }}
}}

#[tokio::main]
async fn main() -> Result<()> {{
    micro::Service::new("{name}")
        .address("127.0.0.1:8080")
        .handle({ty})
        .run()
        .await
}}

#[cfg(test)]
mod tests {{
    use super::*;

    #[tokio::test]
    async fn hello_greets_by_name() {{
        // Everything in this process: no network but loopback.
        let backends = micro::Backends::memory();
        let running = micro::Service::new("{name}")
            .address("127.0.0.1:0")
            .backends(&backends)
            .handle({ty})
            .start()
            .await
            .unwrap();
        let client = {ty}Client::new("{name}", micro::Client::builder().backends(&backends).build());
        let reply = client
            .hello(HelloRequest {{
                name: "alice".into(),
            }})
            .await
            .unwrap();
        assert_eq!(reply.message, "Hello alice");
        let refused = client
            .hello(HelloRequest {{
                name: String::new(),
            }})
            .await
            .unwrap_err();
        assert_eq!(refused.code(), 400);
        running.stop().await.unwrap();
    }}
}}
"#
    )
}

fn readme(name: &str, ty: &str) -> String {
    format!(
        r#"# {name}

A micro service.

```sh
cargo test          # the handler, called through the generated client
cargo run           # serves on 127.0.0.1:8080
micro call {name} {ty}.Hello '{{"name": "alice"}}'
```
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_types_and_bad_ones_are_refused() {
        assert_eq!(camel("order-service"), "OrderService");
        assert_eq!(camel("billing_v2"), "BillingV2");
        assert!(check("orders").is_ok());
        assert!(check("Orders").is_err());
        assert!(check("9lives").is_err());
        assert!(check("a b").is_err());
    }

    #[test]
    fn the_dependency_is_a_path_or_a_version() {
        assert_eq!(dependency(Some("0.1")), "micro = \"0.1\"");
        assert_eq!(
            dependency(Some("../micro")),
            "micro = { path = \"../micro\" }"
        );
        assert!(dependency(None).contains("path"));
    }
}
