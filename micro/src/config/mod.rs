//! Configuration: layered sources, typed values, hot reload that never
//! loads a bad file.
//!
//! A [`Config`] merges its sources in the order the builder was given
//! them, later ones winning:
//!
//! | source | builder | keys | values |
//! |---|---|---|---|
//! | defaults | [`defaults`](ConfigBuilder::defaults), [`set_default`](ConfigBuilder::set_default) | as serialized | typed |
//! | files | [`file`](ConfigBuilder::file), [`optional_file`](ConfigBuilder::optional_file) | JSON, TOML or YAML by extension | typed; `${VAR}` and `${VAR:-default}` expanded in strings |
//! | environment | [`env`](ConfigBuilder::env) | `APP_DATABASE__MAX_CONNS` is `database.max_conns` | text |
//! | command line | [`args`](ConfigBuilder::args) | `--database.max_conns=5` | text |
//! | a store | [`store`](ConfigBuilder::store), [`remote`](ConfigBuilder::remote) | `greeter/limits` is `greeter.limits` | each record's value |
//!
//! The merge rules: tables merge key by key; anything else replaces what
//! came before, so a later `false`, `0` or `""` wins and arrays are
//! replaced whole; a `null` deletes the key. Text (the environment, flags,
//! an expanded `${VAR}`) becomes the type it is read as when it parses as
//! that, so `"5"` reads as a number; a string a file typed stays a string,
//! so `"t"` is never a boolean.
//!
//! Files and the store are watched. A file's directory is watched (editors
//! and Kubernetes ConfigMaps replace files by rename), and a change is
//! read once the directory has been quiet for 100 ms. A file that does not
//! parse, a store value that does not decode, a section that does not
//! deserialize into its watcher's type or fails its validation: each keeps
//! the last good value, is logged, and is reported to
//! [`errors`](Config::errors) and the watcher's
//! [`last_error`](Watched::last_error).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> micro::Result<()> {
//! use micro::config::Config;
//! use serde::Deserialize;
//!
//! #[derive(Debug, Deserialize)]
//! struct Database {
//!     url: String,
//!     max_conns: u32,
//! }
//!
//! let config = Config::builder()
//!     .set_default("database.max_conns", 10)
//!     .set_default("database.url", "postgres://localhost/app")
//!     .env_from("APP", [("APP_DATABASE__MAX_CONNS".into(), "5".into())])
//!     .args(["--database.url=postgres://db/app"])
//!     .load()
//!     .await?;
//! let db: Database = config.get("database")?;
//! assert_eq!(db.max_conns, 5);
//! assert_eq!(db.url, "postgres://db/app");
//! assert_eq!(config.explain("database.max_conns").unwrap().to_string(),
//!            "database.max_conns: env APP_DATABASE__MAX_CONNS (over default)");
//! # Ok(()) }
//! ```
//!
//! micro's own settings can come from the same config: every `MICRO_*`
//! variable is also the key `micro.*` (`MICRO_STORE_ADDRESS` is
//! `micro.store_address`), the variable winning when both are set; see
//! [`Config::micro_var`], [`Backends::from_config`](crate::Backends::from_config)
//! and [`Service::config`](crate::Service::config).

mod builder;
mod de;
mod format;
mod remote;
mod secret;
mod sources;
mod value;
mod watch;

use std::fmt;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, watch as tokio_watch};

pub use builder::ConfigBuilder;
pub use secret::Secret;
pub use value::Origin;
pub use watch::Watched;

use crate::{Error, code};
use builder::{Layer, Source, merge, micro_var};
use value::{Node, Value};

/// Why a config value could not be had, or a source could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    kind: ConfigErrorKind,
    path: Option<String>,
    origin: Option<Origin>,
    message: String,
}

/// What kind of [`ConfigError`] it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// No source sets the path (404).
    Missing,
    /// A value is not of the type it was read as (400).
    Invalid,
    /// A section's validation refused it (400).
    Rejected,
    /// A source could not be read or parsed (400).
    Source,
    /// The remote source cannot be reached (503).
    Unavailable,
}

impl ConfigError {
    /// What kind of error it is.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// The path of the value at fault, if one is.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// The source that set the value at fault, if one did.
    pub fn origin(&self) -> Option<&Origin> {
        self.origin.as_ref()
    }

    fn source(what: impl fmt::Display, why: impl fmt::Display) -> Self {
        Self {
            kind: ConfigErrorKind::Source,
            path: None,
            origin: None,
            message: format!("config {what}: {why}"),
        }
    }

    fn unavailable(what: impl fmt::Display, why: impl fmt::Display) -> Self {
        Self {
            kind: ConfigErrorKind::Unavailable,
            ..Self::source(what, why)
        }
    }

    /// A value at `path` that failed to be `what` it was read as, or was
    /// refused, because `why`.
    fn at(kind: ConfigErrorKind, tree: &Node, path: &str, why: &str) -> Self {
        let (node, _) = tree.nearest(path);
        let (origin, set_by) = if let Value::Table(_) = node.value {
            // A section: every source that set a value in it.
            let mut leaves = Vec::new();
            node.leaves(path, &mut leaves);
            let mut sources: Vec<String> = Vec::new();
            for (_, leaf) in leaves {
                let source = match &*leaf.origin {
                    Origin::File { path, .. } => format!("file {}", path.display()),
                    other => other.to_string(),
                };
                if !sources.contains(&source) {
                    sources.push(source);
                }
            }
            (None, sources.join(", "))
        } else {
            (Some((*node.origin).clone()), node.origin.to_string())
        };
        let set_by = if set_by.is_empty() {
            String::new()
        } else {
            format!(" (set by {set_by})")
        };
        let shown = if path.is_empty() { "(root)" } else { path };
        let message = match kind {
            ConfigErrorKind::Rejected => format!("config \"{shown}\"{set_by} was refused: {why}"),
            _ => format!("config \"{shown}\"{set_by}: {why}"),
        };
        Self {
            kind,
            path: Some(path.to_owned()),
            origin,
            message,
        }
    }
}

impl From<ConfigError> for Error {
    fn from(err: ConfigError) -> Self {
        let code = match err.kind {
            ConfigErrorKind::Missing => code::NOT_FOUND,
            ConfigErrorKind::Unavailable => code::UNAVAILABLE,
            _ => code::BAD_REQUEST,
        };
        Error::new("", code, err.to_string()).with_source(err)
    }
}

/// Where a value came from, and what it replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Explanation {
    /// The path asked about.
    pub path: String,
    /// The source that set the value.
    pub origin: Origin,
    /// The sources whose values it replaced, latest first.
    pub replaced: Vec<Origin>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.origin)?;
        if !self.replaced.is_empty() {
            let over: Vec<String> = self.replaced.iter().map(ToString::to_string).collect();
            write!(f, " (over {})", over.join(", "))?;
        }
        Ok(())
    }
}

/// A loaded configuration; see the [module docs](self). Cheap to clone:
/// clones share the sources and their watches, which stop when the last
/// clone and the last [`Watched`] are dropped.
#[derive(Clone)]
pub struct Config {
    inner: Arc<Inner>,
}

struct Inner {
    layers: Mutex<Vec<Layer>>,
    /// The merged tree, replaced on each change.
    tree: tokio_watch::Sender<Arc<Node>>,
    errors: broadcast::Sender<ConfigError>,
    last_error: Mutex<Option<ConfigError>>,
    secrets: Vec<String>,
    /// What watches the sources: dropped (and stopped) with the config.
    watching: Mutex<Vec<watch::Watching>>,
}

impl Config {
    /// A builder with no sources.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// The value at `path` (dotted; `""` for the whole config) as a `T`:
    /// a single value or a whole section.
    ///
    /// # Errors
    /// [`Missing`](ConfigErrorKind::Missing) when no source sets `path`;
    /// [`Invalid`](ConfigErrorKind::Invalid) naming the path, the source
    /// that set it and the type expected when it is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ConfigError> {
        let tree = self.tree();
        read_at(&tree, path)
    }

    /// As [`get`](Self::get), with `fallback` when no source sets `path`;
    /// a value of the wrong type is still an error.
    ///
    /// # Errors
    /// As [`get`](Self::get), but never `Missing`.
    pub fn get_or<T: DeserializeOwned>(&self, path: &str, fallback: T) -> Result<T, ConfigError> {
        match self.get(path) {
            Err(e) if e.kind == ConfigErrorKind::Missing => Ok(fallback),
            other => other,
        }
    }

    /// Whether a source sets `path`.
    pub fn contains(&self, path: &str) -> bool {
        self.tree().get(path).is_some()
    }

    /// Where the value at `path` came from; `None` when nothing sets it.
    /// A table's origin is the first source that set a key in it.
    pub fn explain(&self, path: &str) -> Option<Explanation> {
        let tree = self.tree();
        let node = tree.get(path)?;
        Some(Explanation {
            path: path.to_owned(),
            origin: (*node.origin).clone(),
            replaced: node.replaced.iter().map(|o| (**o).clone()).collect(),
        })
    }

    /// `MICRO_<NAME>` from the environment when set, else the key
    /// `micro.<name>` (lowercased) of this config: how micro's own settings
    /// come from a config.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> micro::Result<()> {
    /// let config = micro::config::Config::builder()
    ///     .set_default("micro.store", "file")
    ///     .load()
    ///     .await?;
    /// # if std::env::var_os("MICRO_STORE").is_none() {
    /// assert_eq!(config.micro_var("MICRO_STORE").as_deref(), Some("file"));
    /// # }
    /// # Ok(()) }
    /// ```
    pub fn micro_var(&self, name: &str) -> Option<String> {
        micro_var(&self.tree(), name)
    }

    /// The whole config as JSON, secrets shown as `"<redacted>"`.
    pub fn redacted(&self) -> serde_json::Value {
        self.tree().to_json("", &|path| self.is_secret(path))
    }

    /// Watches the section at `path` as a `T`: the watcher has the current
    /// value and gets each new one that deserializes.
    ///
    /// # Errors
    /// As [`get`](Self::get), for the current value.
    pub fn watch<T>(&self, path: &str) -> Result<Watched<T>, ConfigError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        self.watch_validated(path, |_: &T| Ok::<(), String>(()))
    }

    /// As [`watch`](Self::watch), and a new value must pass `validate`
    /// too; one that fails it is not given to the watcher, is logged and
    /// is reported.
    ///
    /// # Errors
    /// As [`get`](Self::get), or [`Rejected`](ConfigErrorKind::Rejected)
    /// when the current value fails `validate`.
    pub fn watch_validated<T, F, E>(
        &self,
        path: &str,
        validate: F,
    ) -> Result<Watched<T>, ConfigError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
        F: Fn(&T) -> Result<(), E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        watch::section(self, path, validate)
    }

    /// Reads every file again now, as a change would; returns the first
    /// error (the files that failed keep their last good values).
    ///
    /// # Errors
    /// A file that is missing (when required) or does not parse.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let mut first = None;
        {
            let mut layers = self.inner.layers.lock().unwrap_or_else(|e| e.into_inner());
            for layer in layers.iter_mut() {
                if !matches!(layer.source, Source::File { .. } | Source::Env { .. }) {
                    continue;
                }
                // Files and the environment read without waiting.
                let read = futures_util::FutureExt::now_or_never(layer.read())
                    .expect("files are read without waiting");
                if let Err(e) = read {
                    self.report(e.clone());
                    first.get_or_insert(e);
                }
            }
        }
        self.publish();
        first.map_or(Ok(()), Err)
    }

    /// Every error a reload meets from now on: a file or store value that
    /// does not parse, a section its watcher's type or validation refuses,
    /// a store that went away. Each is also logged.
    pub fn errors(&self) -> broadcast::Receiver<ConfigError> {
        self.inner.errors.subscribe()
    }

    /// The last error a reload met, if any did since the config loaded.
    pub fn last_error(&self) -> Option<ConfigError> {
        self.inner
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn tree(&self) -> Arc<Node> {
        self.inner.tree.borrow().clone()
    }

    fn is_secret(&self, path: &str) -> bool {
        let marked = self.inner.secrets.iter().any(|s| {
            path == s || (path.starts_with(s.as_str()) && path[s.len()..].starts_with('.'))
        });
        marked || path.split('.').any(secret::named_like_one)
    }

    /// Logs and passes on an error a reload met.
    fn report(&self, err: ConfigError) {
        tracing::warn!(error = %err, "config: kept the last good value");
        *self
            .inner
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(err.clone());
        let _ = self.inner.errors.send(err);
    }

    /// Merges the layers again, and passes the tree on if it changed.
    fn publish(&self) {
        let tree = {
            let layers = self.inner.layers.lock().unwrap_or_else(|e| e.into_inner());
            merge(&layers)
        };
        self.inner.tree.send_if_modified(|current| {
            if **current == tree {
                return false;
            }
            *current = Arc::new(tree);
            true
        });
    }
}

impl crate::Backends {
    /// As [`from_env`](crate::Backends::from_env), each `MICRO_*` variable
    /// that is unset in the environment read from `config`'s key `micro.*`
    /// (`MICRO_STORE_ADDRESS` from `micro.store_address`): micro's own
    /// settings in the service's config file.
    pub fn from_config(config: &Config) -> Self {
        Self::from_vars(|name| config.micro_var(name))
    }
}

/// The value at `path` of `tree` as a `T`.
fn read_at<T: DeserializeOwned>(tree: &Node, path: &str) -> Result<T, ConfigError> {
    let Some(node) = tree.get(path) else {
        let (_, found) = tree.nearest(path);
        let near = if found.is_empty() {
            String::new()
        } else {
            format!(" (\"{found}\" is set, nothing under it)")
        };
        return Err(ConfigError {
            kind: ConfigErrorKind::Missing,
            path: Some(path.to_owned()),
            origin: None,
            message: format!("config \"{path}\" is not set by any source{near}"),
        });
    };
    de::read(node, path).map_err(|e| {
        let at = e.path.unwrap_or_else(|| path.to_owned());
        let why = if at == path {
            format!("{} (as {})", e.message, std::any::type_name::<T>())
        } else {
            let shown = if path.is_empty() { "(root)" } else { path };
            format!(
                "{} (reading \"{shown}\" as {})",
                e.message,
                std::any::type_name::<T>()
            )
        };
        ConfigError::at(ConfigErrorKind::Invalid, tree, &at, &why)
    })
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("values", &self.redacted())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Config {
    /// One line per value, with where it came from; secrets redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tree = self.tree();
        let mut leaves = Vec::new();
        tree.leaves("", &mut leaves);
        for (path, node) in leaves {
            let shown = if self.is_secret(&path) {
                serde_json::Value::String(value::REDACTED.into())
            } else {
                node.to_json(&path, &|p| self.is_secret(p))
            };
            writeln!(f, "{path} = {shown}  # {}", node.origin)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner").finish_non_exhaustive()
    }
}
