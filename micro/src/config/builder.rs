//! The builder: each source as it was given, its last good tree, and
//! the merge of them all in order.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{broadcast, watch as tokio_watch};

use super::format::{self, Format};
use super::value::{self, Node, Origin, Value};
use super::{Config, ConfigError, Inner, remote, sources, watch};
use crate::store::Store;

/// One source of a config, as the builder was given it.
#[derive(Debug)]
pub(super) enum Source {
    Fixed(Node),
    File {
        path: PathBuf,
        required: bool,
    },
    Env {
        prefix: String,
        vars: Option<Vec<(String, String)>>,
    },
    Args(Vec<String>),
    Store(remote::Remote),
    /// The store `MICRO_CONFIG` names, if it names one.
    Remote {
        prefix: String,
    },
}

/// A source and its last good tree.
#[derive(Debug)]
pub(super) struct Layer {
    pub(super) source: Source,
    pub(super) tree: Node,
    /// For a file: the text last read, to skip reloads that change
    /// nothing.
    pub(super) text: Option<String>,
}

/// Builds a [`Config`]; see the [module docs](crate::config).
#[derive(Debug, Default)]
#[must_use]
pub struct ConfigBuilder {
    sources: Vec<Source>,
    secrets: Vec<String>,
    watch: Option<bool>,
}

impl ConfigBuilder {
    /// Defaults from a serializable value (a struct with defaults, or a
    /// `serde_json::json!` literal); a value that does not serialize to a
    /// table is ignored with an error logged.
    pub fn defaults<T: Serialize>(mut self, value: &T) -> Self {
        match serde_json::to_value(value) {
            Ok(v @ serde_json::Value::Object(_)) => self.sources.push(Source::Fixed(
                value::from_json(v, &Arc::new(Origin::Default)),
            )),
            Ok(other) => {
                tracing::error!(value = %other, "config defaults must be a table; ignored")
            }
            Err(e) => tracing::error!(error = %e, "config defaults do not serialize; ignored"),
        }
        self
    }

    /// A default for one path.
    pub fn set_default<T: Serialize>(mut self, path: &str, value: T) -> Self {
        match serde_json::to_value(value) {
            Ok(v) => {
                let origin = Arc::new(Origin::Default);
                let mut root = Node::table(origin.clone());
                let path: Vec<String> = value::segments(path).map(str::to_owned).collect();
                root.insert(&path, value::from_json(v, &origin));
                self.sources.push(Source::Fixed(root));
            }
            Err(e) => {
                tracing::error!(error = %e, path, "config default does not serialize; ignored")
            }
        }
        self
    }

    /// A file that must exist: JSON, TOML or YAML by its extension
    /// (`.json`, `.toml`, `.yaml`, `.yml`).
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.sources.push(Source::File {
            path: path.into(),
            required: true,
        });
        self
    }

    /// A file that may be missing; when it is (or is removed later), it
    /// sets nothing.
    pub fn optional_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.sources.push(Source::File {
            path: path.into(),
            required: false,
        });
        self
    }

    /// The process's environment variables starting with `prefix` and
    /// `_`: `APP_DATABASE__MAX_CONNS` sets `database.max_conns` (a double
    /// underscore nests, single ones stay, names are lowercased).
    pub fn env(mut self, prefix: impl Into<String>) -> Self {
        self.sources.push(Source::Env {
            prefix: prefix.into(),
            vars: None,
        });
        self
    }

    /// As [`env`](Self::env), from the variables given instead of the
    /// process's.
    pub fn env_from(
        mut self,
        prefix: impl Into<String>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        self.sources.push(Source::Env {
            prefix: prefix.into(),
            vars: Some(vars.into_iter().collect()),
        });
        self
    }

    /// Command-line flags: `--database.max_conns=5`, `--name value`, and
    /// a bare `--verbose` for `true`; other arguments are the program's,
    /// and `--` ends the flags. Pass `std::env::args().skip(1)`.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.sources
            .push(Source::Args(args.into_iter().map(Into::into).collect()));
        self
    }

    /// The records under `prefix` in `scope` of `store`, watched: the key
    /// `<prefix>greeter/limits` (or `greeter.limits`) sets
    /// `greeter.limits` to the record's value. A store that cannot watch
    /// is read once.
    pub fn store(mut self, store: Arc<dyn Store>, scope: &str, prefix: &str) -> Self {
        self.sources
            .push(Source::Store(remote::Remote::new(store, scope, prefix)));
        self
    }

    /// The store that `MICRO_CONFIG` and `MICRO_CONFIG_ADDRESS` name (from
    /// the environment, or `micro.config` and `micro.config_address` in
    /// the sources before this one), as [`store`](Self::store) with scope
    /// `config` and `prefix`; nothing when `MICRO_CONFIG` is unset.
    pub fn remote(mut self, prefix: &str) -> Self {
        self.sources.push(Source::Remote {
            prefix: prefix.to_owned(),
        });
        self
    }

    /// Marks `path` (and everything under it) secret: printed and
    /// explained as `<redacted>`. Keys named like secrets (containing
    /// `password`, `secret` or `token`, or ending in `api_key` or
    /// `private_key`) are secret without being marked.
    pub fn secret(mut self, path: &str) -> Self {
        self.secrets.push(path.to_owned());
        self
    }

    /// Whether to watch files and the store for changes (the default) or
    /// read them once.
    pub fn watch(mut self, watch: bool) -> Self {
        self.watch = Some(watch);
        self
    }

    /// Reads every source and merges them; then watches files and the
    /// store unless told not to.
    ///
    /// # Errors
    /// A required file missing or not parsing, an unset `${VAR}` with no
    /// default, a bad flag, or a store that cannot be read.
    pub async fn load(self) -> Result<Config, ConfigError> {
        let mut layers = Vec::with_capacity(self.sources.len());
        for source in self.sources {
            let source = match source {
                Source::Remote { prefix } => {
                    let merged = merge(&layers);
                    let var = |name: &str| micro_var(&merged, name);
                    match crate::backend::config_store(&var) {
                        Some(store) => Source::Store(remote::Remote::new(store, "config", &prefix)),
                        None => continue,
                    }
                }
                other => other,
            };
            let mut layer = Layer {
                source,
                tree: Node::table(Arc::new(Origin::Default)),
                text: None,
            };
            layer.read().await?;
            layers.push(layer);
        }
        let tree = Arc::new(merge(&layers));
        let (tree_tx, _) = tokio_watch::channel(tree);
        let (errors, _) = broadcast::channel(64);
        let config = Config {
            inner: Arc::new(Inner {
                layers: Mutex::new(layers),
                tree: tree_tx,
                errors,
                last_error: Mutex::new(None),
                secrets: self.secrets,
                watching: Mutex::new(Vec::new()),
            }),
        };
        if self.watch.unwrap_or(true) {
            watch::start(&config)?;
        }
        Ok(config)
    }
}

impl Layer {
    /// Reads the source again; on an error the last good tree stays.
    pub(super) async fn read(&mut self) -> Result<bool, ConfigError> {
        let tree = match &self.source {
            Source::Fixed(tree) => tree.clone(),
            Source::File { path, required } => {
                let Some(format) = Format::of(path) else {
                    return Err(ConfigError::source(
                        format_args!("file {}", path.display()),
                        "unknown format: name it .json, .toml, .yaml or .yml",
                    ));
                };
                let text = match std::fs::read_to_string(path) {
                    Ok(text) => Some(text),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => None,
                    Err(e) => {
                        return Err(ConfigError::source(
                            format_args!("file {}", path.display()),
                            e,
                        ));
                    }
                };
                if text.is_some() && text == self.text {
                    return Ok(false);
                }
                let tree = match &text {
                    Some(parsed) => {
                        let var = |name: &str| std::env::var(name).ok();
                        match format::parse(parsed, format, path, &var) {
                            Ok(tree) => tree,
                            Err(e) => {
                                // Reported once: the same text again is
                                // no change.
                                self.text = text;
                                return Err(ConfigError::source(
                                    format_args!("file {}", path.display()),
                                    e,
                                ));
                            }
                        }
                    }
                    None => Node::table(Arc::new(Origin::File {
                        path: path.clone(),
                        line: None,
                    })),
                };
                self.text = text;
                tree
            }
            Source::Env { prefix, vars } => match vars {
                Some(vars) => sources::env(prefix, vars.iter().cloned()),
                None => sources::env(prefix, std::env::vars()),
            },
            Source::Args(args) => {
                sources::args(args).map_err(|e| ConfigError::source("command line", e))?
            }
            Source::Store(remote) => remote.read().await?,
            Source::Remote { .. } => unreachable!("made a store source when loaded"),
        };
        let changed = tree != self.tree;
        self.tree = tree;
        Ok(changed)
    }
}

/// The layers merged, in order.
pub(super) fn merge(layers: &[Layer]) -> Node {
    let mut root = Node::table(Arc::new(Origin::Default));
    for layer in layers {
        root.merge(layer.tree.clone());
    }
    root
}

/// `MICRO_<NAME>` from the environment, else `micro.<name>` from `tree`.
pub(super) fn micro_var(tree: &Node, name: &str) -> Option<String> {
    if let Some(v) = std::env::var(name).ok().filter(|v| !v.is_empty()) {
        return Some(v);
    }
    let key = name.strip_prefix("MICRO_")?.to_ascii_lowercase();
    let node = tree.get("micro")?.get(&key)?;
    match &node.value {
        Value::Str(s) | Value::Text(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
    .filter(|v| !v.is_empty())
}
