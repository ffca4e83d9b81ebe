//! A store as a config source: each record under a prefix is a value.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use super::ConfigError;
use super::value::{Node, Origin, from_json};
use crate::store::{Change, Query, Record, Store};

/// How many records one list call reads.
const PAGE: usize = 500;

/// The records under `prefix` in `scope` of a store, and the last good
/// value of each.
#[derive(Clone)]
pub(crate) struct Remote {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) scope: String,
    pub(crate) prefix: String,
    /// The last good value of each key.
    entries: Arc<Mutex<BTreeMap<String, Node>>>,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("store", &self.store.name())
            .field("scope", &self.scope)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Remote {
    pub(crate) fn new(store: Arc<dyn Store>, scope: &str, prefix: &str) -> Self {
        Self {
            store,
            scope: scope.to_owned(),
            prefix: prefix.to_owned(),
            entries: Arc::default(),
        }
    }

    /// What this source is called in messages: `remote nats config/greeter/`.
    pub(crate) fn label(&self) -> String {
        format!(
            "remote {} {}/{}",
            self.store.name(),
            self.scope,
            self.prefix
        )
    }

    /// Reads every record again. A record whose value does not decode
    /// keeps its last good value and is reported in the error, after the
    /// others are taken.
    ///
    /// # Errors
    /// The store cannot be read (503), or a value does not decode (400).
    pub(crate) async fn read(&self) -> Result<Node, ConfigError> {
        let mut records = Vec::new();
        let mut query = Query::prefix(self.prefix.clone()).limit(PAGE);
        loop {
            let page = self
                .store
                .list(&self.scope, &query)
                .await
                .map_err(|e| ConfigError::unavailable(self.label(), e))?;
            let last = page.last().map(|r| r.key.clone());
            let full = page.len() == PAGE;
            records.extend(page);
            match last {
                Some(last) if full => query = query.after(last),
                _ => break,
            }
        }
        let mut first_error = None;
        {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            let mut fresh = BTreeMap::new();
            for record in records {
                match self.decode(&record) {
                    Ok(node) => {
                        fresh.insert(record.key, node);
                    }
                    Err(e) => {
                        if let Some(old) = entries.remove(&record.key) {
                            fresh.insert(record.key, old);
                        }
                        first_error.get_or_insert(e);
                    }
                }
            }
            *entries = fresh;
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(self.tree()),
        }
    }

    /// Takes in one change; whether the tree changed.
    ///
    /// # Errors
    /// The new value does not decode: the key keeps its last good value.
    pub(crate) fn apply(&self, change: Change) -> Result<bool, ConfigError> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match change {
            Change::Put(record) => {
                let node = self.decode(&record)?;
                let old = entries.insert(record.key, node.clone());
                Ok(old.is_none_or(|old| old != node))
            }
            Change::Delete(key) | Change::Expire(key) => Ok(entries.remove(&key).is_some()),
        }
    }

    /// The tree of the last good values, in key order: a longer key sets
    /// a value inside a shorter one's.
    pub(crate) fn tree(&self) -> Node {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut root = Node::table(Arc::new(Origin::Remote {
            store: format!("{} {}", self.store.name(), self.scope),
            key: self.prefix.clone(),
        }));
        for (key, node) in entries.iter() {
            let path = self.path(key);
            let mut layer = Node::table(node.origin.clone());
            layer.insert(&path, node.clone());
            root.merge(layer);
        }
        root
    }

    /// The config path of a record's key: after the prefix, split on `/`
    /// and `.`.
    fn path(&self, key: &str) -> Vec<String> {
        key.strip_prefix(&self.prefix)
            .unwrap_or(key)
            .split(['/', '.'])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn decode(&self, record: &Record) -> Result<Node, ConfigError> {
        let origin = Arc::new(Origin::Remote {
            store: format!("{} {}", self.store.name(), self.scope),
            key: record.key.clone(),
        });
        let value: serde_json::Value = record.decode().map_err(|e| ConfigError {
            kind: super::ConfigErrorKind::Source,
            path: Some(self.path(&record.key).join(".")),
            origin: Some((*origin).clone()),
            message: format!("config {} key {}: {}", self.label(), record.key, e.detail()),
        })?;
        Ok(from_json(value, &origin))
    }
}
