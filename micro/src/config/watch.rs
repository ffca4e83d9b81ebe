//! Watching: files by their directories, the store by its watch, and the
//! typed sections handed to the program.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use notify::Watcher as _;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::remote::Remote;
use super::value::Node;
use super::{Config, ConfigError, ConfigErrorKind, Inner, Source, read_at};
use crate::store::StoreError;

/// How long a directory must be quiet before its files are read again.
const QUIET: Duration = Duration::from_millis(100);

/// The longest a burst of changes can hold a reload back.
const AT_MOST: Duration = Duration::from_secs(1);

/// How often a watched store is checked for being reachable: a watch on a
/// server that went away may just fall silent.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// How long one check may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Something that watches a source; stopped when dropped.
pub(super) enum Watching {
    /// Held, not read: dropping it stops the watch.
    Files(#[expect(dead_code, reason = "held to keep watching")] notify::RecommendedWatcher),
    Task(JoinHandle<()>),
}

impl Drop for Watching {
    fn drop(&mut self) {
        if let Watching::Task(task) = self {
            task.abort();
        }
    }
}

/// Starts watching the config's files and stores.
///
/// # Errors
/// The files' directories cannot be watched (inotify limits, say).
pub(super) fn start(config: &Config) -> Result<(), ConfigError> {
    let (files, remotes) = {
        let layers = config
            .inner
            .layers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut files = Vec::new();
        let mut remotes = Vec::new();
        for (index, layer) in layers.iter().enumerate() {
            match &layer.source {
                Source::File { path, .. } => files.push(path.clone()),
                Source::Store(remote) => remotes.push((index, remote.clone())),
                _ => {}
            }
        }
        (files, remotes)
    };
    let mut watching = Vec::new();
    if !files.is_empty() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                // Reads (our own among them) change nothing.
                if let Ok(event) = &event
                    && matches!(event.kind, notify::EventKind::Access(_))
                {
                    return;
                }
                let _ = tx.send(());
            })
            .map_err(|e| ConfigError::source("file watch", e))?;
        for dir in directories(&files) {
            watcher
                .watch(&dir, notify::RecursiveMode::NonRecursive)
                .map_err(|e| ConfigError::source(format_args!("watch of {}", dir.display()), e))?;
        }
        watching.push(Watching::Files(watcher));
        let weak = Arc::downgrade(&config.inner);
        watching.push(Watching::Task(tokio::spawn(reload_files(weak, rx))));
    }
    for (index, remote) in remotes {
        let weak = Arc::downgrade(&config.inner);
        watching.push(Watching::Task(tokio::spawn(follow(weak, index, remote))));
    }
    *config
        .inner
        .watching
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = watching;
    Ok(())
}

/// The directories to watch for `files`: each one's own, and that of the
/// file it links to when it is a link elsewhere.
fn directories(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut dirs = BTreeSet::new();
    for file in files {
        let parent = |p: &Path| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        dirs.insert(parent(file));
        if let Ok(real) = std::fs::canonicalize(file) {
            dirs.insert(parent(&real));
        }
    }
    dirs.retain(|d| d.is_dir());
    dirs
}

/// Reads the files again after each burst of changes in their
/// directories.
async fn reload_files(weak: Weak<Inner>, mut events: mpsc::UnboundedReceiver<()>) {
    while events.recv().await.is_some() {
        let deadline = tokio::time::Instant::now() + AT_MOST;
        // Until the directory is quiet, or a second at most.
        while let Ok(Some(())) = tokio::time::timeout_at(
            (tokio::time::Instant::now() + QUIET).min(deadline),
            events.recv(),
        )
        .await
        {}
        let Some(inner) = weak.upgrade() else { return };
        let config = Config { inner };
        // Each error is reported as it is met.
        let _ = config.reload();
    }
}

/// Follows a store: its watch, and a check that it is reachable; after an
/// outage, reads every record again.
async fn follow(weak: Weak<Inner>, index: usize, remote: Remote) {
    let mut pause = Duration::from_millis(100);
    let mut down = false;
    loop {
        let watch = remote.store.watch(&remote.scope, &remote.prefix);
        let watch = tokio::time::timeout(PROBE_TIMEOUT, watch)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(format!(
                    "no answer in {PROBE_TIMEOUT:?}"
                )))
            });
        let mut changes = match watch {
            Ok(changes) => Some(changes),
            // Read once, at load.
            Err(StoreError::Unsupported(_)) => None,
            Err(e) => {
                if !report_down(&weak, &remote, &mut down, e) {
                    return;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        // What changed before the watch began (or while the store was
        // away).
        let read = tokio::time::timeout(PROBE_TIMEOUT, remote.read())
            .await
            .unwrap_or_else(|_| {
                Err(ConfigError::unavailable(
                    remote.label(),
                    format_args!("no answer in {PROBE_TIMEOUT:?}"),
                ))
            });
        let Some(config) = upgrade(&weak) else { return };
        match read {
            Ok(_) => {}
            // Gone since the watch began: an outage like any other,
            // reported once, the last values kept.
            Err(mut e) if e.kind == ConfigErrorKind::Unavailable => {
                if !down {
                    down = true;
                    e.message.push_str("; keeping the last values");
                    config.report(e);
                }
            }
            Err(e) => config.report(e),
        }
        set_layer(&config, index, remote.tree());
        drop(config);
        let Some(changes) = changes.as_mut() else {
            return;
        };
        let mut probe = tokio::time::interval(PROBE_EVERY);
        probe.tick().await;
        let ended = loop {
            tokio::select! {
                change = changes.next() => match change {
                    Some(Ok(change)) => {
                        let Some(config) = upgrade(&weak) else { return };
                        match remote.apply(change) {
                            Ok(true) => set_layer(&config, index, remote.tree()),
                            Ok(false) => {}
                            Err(e) => config.report(e),
                        }
                    }
                    Some(Err(e)) => break Some(e),
                    None => break Some(StoreError::Unavailable("the watch ended".into())),
                },
                _ = probe.tick() => {
                    let query = crate::store::Query::prefix(remote.prefix.clone()).limit(1);
                    let check = remote.store.list(&remote.scope, &query);
                    match tokio::time::timeout(PROBE_TIMEOUT, check).await {
                        Ok(Ok(_)) if down => {
                            // Back: read everything again, on a new watch.
                            down = false;
                            pause = Duration::from_millis(100);
                            tracing::info!(source = %remote.label(), "config: the store is back");
                            break None;
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            if !report_down(&weak, &remote, &mut down, e) {
                                return;
                            }
                        }
                        Err(_) => {
                            let e = StoreError::Unavailable(format!("no answer in {PROBE_TIMEOUT:?}"));
                            if !report_down(&weak, &remote, &mut down, e) {
                                return;
                            }
                        }
                    }
                }
            }
        };
        // The watch failed (else the store came back, to be read again).
        if let Some(e) = ended
            && !report_down(&weak, &remote, &mut down, e)
        {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

fn upgrade(weak: &Weak<Inner>) -> Option<Config> {
    weak.upgrade().map(|inner| Config { inner })
}

/// Reports the store unreachable (once per outage); false when the config
/// is gone.
fn report_down(weak: &Weak<Inner>, remote: &Remote, down: &mut bool, e: StoreError) -> bool {
    let Some(config) = upgrade(weak) else {
        return false;
    };
    if !*down {
        *down = true;
        config.report(ConfigError::unavailable(
            remote.label(),
            format_args!("{e}; keeping the last values"),
        ));
    }
    true
}

/// Replaces the tree of layer `index`, and passes the change on.
fn set_layer(config: &Config, index: usize, tree: Node) {
    {
        let mut layers = config
            .inner
            .layers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(layer) = layers.get_mut(index) {
            layer.tree = tree;
        }
    }
    config.publish();
}

/// A section of a config as a `T`, kept current: [`get`](Self::get) is
/// the last value that deserialized (and passed its validation), and
/// [`changed`](Self::changed) waits for the next. Cheap to clone.
pub struct Watched<T> {
    value: watch::Receiver<Arc<T>>,
    error: Arc<Mutex<Option<ConfigError>>>,
    path: Arc<str>,
    _config: Config,
}

impl<T> Clone for Watched<T> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            error: self.error.clone(),
            path: self.path.clone(),
            _config: self._config.clone(),
        }
    }
}

impl<T> fmt::Debug for Watched<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watched")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl<T> Watched<T> {
    /// The current value.
    pub fn get(&self) -> Arc<T> {
        self.value.borrow().clone()
    }

    /// Waits for the next good value, and returns it.
    pub async fn changed(&mut self) -> Arc<T> {
        if self.value.changed().await.is_err() {
            // The config is held by this watcher, so its sender lives.
            std::future::pending::<()>().await;
        }
        self.value.borrow_and_update().clone()
    }

    /// Why the last change of this section was not taken, if it was not:
    /// cleared by the next good value.
    pub fn last_error(&self) -> Option<ConfigError> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The section's path.
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// Watches the section at `path` as a `T` that `validate` accepts.
pub(super) fn section<T, F, E>(
    config: &Config,
    path: &str,
    validate: F,
) -> Result<Watched<T>, ConfigError>
where
    T: DeserializeOwned + Send + Sync + 'static,
    F: Fn(&T) -> Result<(), E> + Send + Sync + 'static,
    E: fmt::Display,
{
    let check = move |tree: &Node, path: &str| -> Result<T, ConfigError> {
        let value: T = read_at(tree, path)?;
        validate(&value)
            .map_err(|e| ConfigError::at(ConfigErrorKind::Rejected, tree, path, &e.to_string()))?;
        Ok(value)
    };
    let mut trees = config.inner.tree.subscribe();
    let tree = trees.borrow_and_update().clone();
    let first = check(&tree, path)?;
    let (tx, rx) = watch::channel(Arc::new(first));
    let error = Arc::new(Mutex::new(None));
    let weak = Arc::downgrade(&config.inner);
    let path: Arc<str> = path.into();
    let task_error = error.clone();
    let task_path = path.clone();
    tokio::spawn(async move {
        let mut last = tree.get(&task_path).cloned();
        loop {
            tokio::select! {
                () = tx.closed() => return,
                changed = trees.changed() => if changed.is_err() { return },
            }
            let tree = trees.borrow_and_update().clone();
            let now = tree.get(&task_path).cloned();
            if now == last {
                continue;
            }
            last = now;
            match check(&tree, &task_path) {
                Ok(value) => {
                    *task_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    if tx.send(Arc::new(value)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    *task_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.clone());
                    if let Some(config) = upgrade(&weak) {
                        config.report(e);
                    }
                }
            }
        }
    });
    Ok(Watched {
        value: rx,
        error,
        path,
        _config: config.clone(),
    })
}
