//! The merged tree: values, where each came from, and the merge rules.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// A default given to the builder.
    Default,
    /// A file, and the line the key is on when it could be found.
    File {
        /// The file, as given to the builder.
        path: PathBuf,
        /// The key's line, from 1.
        line: Option<usize>,
    },
    /// An environment variable.
    Env {
        /// The variable's name.
        var: String,
    },
    /// A command-line argument.
    Flag {
        /// The argument's key, as written after `--`.
        arg: String,
    },
    /// A key of the remote source (a store).
    Remote {
        /// The store backend's name and the scope, such as `nats config`.
        store: String,
        /// The record's key.
        key: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File {
                path,
                line: Some(line),
            } => write!(f, "file {}:{line}", path.display()),
            Origin::File { path, line: None } => write!(f, "file {}", path.display()),
            Origin::Env { var } => write!(f, "env {var}"),
            Origin::Flag { arg } => write!(f, "flag --{arg}"),
            Origin::Remote { store, key } => write!(f, "remote {store} key {key}"),
        }
    }
}

/// A value of the tree.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    /// Deletes what an earlier source set; never left in a merged tree.
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A string its source typed as one.
    Str(String),
    /// Text with no type of its own (environment, flags, `${VAR}`): it
    /// becomes whatever the reader asks for, if it parses as that.
    Text(String),
    /// Arrays are replaced whole, never merged.
    Array(Vec<Node>),
    Table(BTreeMap<String, Node>),
}

/// A value and where it came from.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub(crate) value: Value,
    pub(crate) origin: Arc<Origin>,
    /// What this value replaced, latest first.
    pub(crate) replaced: Vec<Arc<Origin>>,
}

impl PartialEq for Node {
    /// Two nodes are equal when their values are: a reload that changes
    /// only where a value came from changes nothing a reader sees.
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl Node {
    pub(crate) fn new(value: Value, origin: Arc<Origin>) -> Self {
        Self {
            value,
            origin,
            replaced: Vec::new(),
        }
    }

    /// An empty table.
    pub(crate) fn table(origin: Arc<Origin>) -> Self {
        Self::new(Value::Table(BTreeMap::new()), origin)
    }

    /// The node at `path` (dot-separated; empty for the root).
    pub(crate) fn get(&self, path: &str) -> Option<&Node> {
        let mut node = self;
        for segment in segments(path) {
            match &node.value {
                Value::Table(t) => node = t.get(segment)?,
                _ => return None,
            }
        }
        Some(node)
    }

    /// The deepest node on the way to `path` (itself when it exists), and
    /// its path.
    pub(crate) fn nearest(&self, path: &str) -> (&Node, String) {
        let mut node = self;
        let mut at = String::new();
        for segment in segments(path) {
            match &node.value {
                Value::Table(t) => match t.get(segment) {
                    Some(n) => {
                        node = n;
                        join(&mut at, segment);
                    }
                    None => break,
                },
                _ => break,
            }
        }
        (node, at)
    }

    /// Lays `layer` over this tree: tables merge key by key, a null
    /// deletes, anything else (arrays included) replaces.
    pub(crate) fn merge(&mut self, layer: Node) {
        match (&mut self.value, layer.value) {
            (Value::Table(mine), Value::Table(theirs)) => {
                for (key, node) in theirs {
                    if node.value == Value::Null {
                        mine.remove(&key);
                        continue;
                    }
                    match mine.get_mut(&key) {
                        Some(existing) => existing.merge(node),
                        None => {
                            mine.insert(key, node.without_nulls());
                        }
                    }
                }
            }
            (_, value) => {
                let mut replaced = vec![self.origin.clone()];
                replaced.append(&mut self.replaced);
                *self = Node {
                    value,
                    origin: layer.origin,
                    replaced,
                }
                .without_nulls();
            }
        }
    }

    /// This node with the nulls of its tables taken out: a null deletes,
    /// and there is nothing under a new key to delete.
    fn without_nulls(mut self) -> Self {
        if let Value::Table(t) = &mut self.value {
            t.retain(|_, n| n.value != Value::Null);
            for n in t.values_mut() {
                *n = std::mem::replace(n, Node::new(Value::Null, n.origin.clone())).without_nulls();
            }
        }
        self
    }

    /// Sets `path` to `node`, making the tables on the way.
    pub(crate) fn insert(&mut self, path: &[String], node: Node) {
        let Some((last, parents)) = path.split_last() else {
            *self = node;
            return;
        };
        let mut at = self;
        for segment in parents {
            if !matches!(at.value, Value::Table(_)) {
                *at = Node::table(node.origin.clone());
            }
            let Value::Table(t) = &mut at.value else {
                unreachable!("made a table above")
            };
            at = t
                .entry(segment.clone())
                .or_insert_with(|| Node::table(node.origin.clone()));
        }
        if !matches!(at.value, Value::Table(_)) {
            *at = Node::table(node.origin.clone());
        }
        if let Value::Table(t) = &mut at.value {
            t.insert(last.clone(), node);
        }
    }

    /// The tree as JSON, secrets (by `secret`, on paths) shown as
    /// `"<redacted>"`.
    pub(crate) fn to_json(&self, path: &str, secret: &dyn Fn(&str) -> bool) -> serde_json::Value {
        use serde_json::Value as J;
        if !path.is_empty() && secret(path) {
            return J::String(REDACTED.into());
        }
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) | Value::Text(s) => J::String(s.clone()),
            Value::Array(items) => {
                J::Array(items.iter().map(|n| n.to_json(path, &|_| false)).collect())
            }
            Value::Table(t) => J::Object(
                t.iter()
                    .map(|(k, n)| {
                        let mut at = path.to_owned();
                        join(&mut at, k);
                        (k.clone(), n.to_json(&at, secret))
                    })
                    .collect(),
            ),
        }
    }

    /// Every leaf (a value that is not a table) with its path, in key
    /// order.
    pub(crate) fn leaves<'a>(&'a self, path: &str, out: &mut Vec<(String, &'a Node)>) {
        match &self.value {
            Value::Table(t) if !t.is_empty() || path.is_empty() => {
                for (k, n) in t {
                    let mut at = path.to_owned();
                    join(&mut at, k);
                    n.leaves(&at, out);
                }
            }
            _ => out.push((path.to_owned(), self)),
        }
    }
}

/// What a secret value is printed as.
pub(crate) const REDACTED: &str = "<redacted>";

/// The segments of a dot-separated path; none for an empty one.
pub(crate) fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('.').filter(|s| !s.is_empty())
}

/// Appends `segment` to the dotted `path`.
pub(crate) fn join(path: &mut String, segment: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(segment);
}

/// A tree from JSON: for defaults and remote values.
pub(crate) fn from_json(value: serde_json::Value, origin: &Arc<Origin>) -> Node {
    use serde_json::Value as J;
    let value = match value {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::Str(s),
        J::Array(items) => Value::Array(items.into_iter().map(|v| from_json(v, origin)).collect()),
        J::Object(map) => Value::Table(
            map.into_iter()
                .map(|(k, v)| (k, from_json(v, origin)))
                .collect(),
        ),
    };
    Node::new(value, origin.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(json: serde_json::Value, origin: Origin) -> Node {
        from_json(json, &Arc::new(origin))
    }

    fn file(name: &str) -> Origin {
        Origin::File {
            path: name.into(),
            line: None,
        }
    }

    #[test]
    fn later_falsy_values_override_and_null_deletes() {
        let mut base = tree(
            serde_json::json!({"a": true, "n": 5, "s": "x", "gone": 1, "keep": {"x": 1, "y": 2}, "list": [1, 2, 3]}),
            Origin::Default,
        );
        base.merge(tree(
            serde_json::json!({"a": false, "n": 0, "s": "", "gone": null, "keep": {"y": null, "z": 3}, "list": [9]}),
            file("b.json"),
        ));
        assert_eq!(
            base.to_json("", &|_| false),
            serde_json::json!({"a": false, "n": 0, "s": "", "keep": {"x": 1, "z": 3}, "list": [9]})
        );
        let a = base.get("a").unwrap();
        assert_eq!(*a.origin, file("b.json"));
        assert_eq!(a.replaced, [Arc::new(Origin::Default)]);
        assert_eq!(*base.get("keep.x").unwrap().origin, Origin::Default);
    }

    #[test]
    fn nulls_under_a_new_key_are_dropped() {
        let mut base = tree(serde_json::json!({}), Origin::Default);
        base.merge(tree(
            serde_json::json!({"t": {"a": null, "b": 1}}),
            file("b.json"),
        ));
        assert_eq!(
            base.to_json("", &|_| false),
            serde_json::json!({"t": {"b": 1}})
        );
    }

    #[test]
    fn a_scalar_replaces_a_table_and_back() {
        let mut base = tree(serde_json::json!({"t": {"a": 1}}), Origin::Default);
        base.merge(tree(serde_json::json!({"t": 5}), file("b.json")));
        assert_eq!(base.to_json("", &|_| false), serde_json::json!({"t": 5}));
        base.merge(tree(serde_json::json!({"t": {"b": 2}}), file("c.json")));
        assert_eq!(
            base.to_json("", &|_| false),
            serde_json::json!({"t": {"b": 2}})
        );
    }

    #[test]
    fn secrets_are_redacted_by_path() {
        let base = tree(
            serde_json::json!({"db": {"password": "hunter2", "host": "h"}}),
            Origin::Default,
        );
        let shown = base.to_json("", &|p| p == "db.password");
        assert_eq!(
            shown,
            serde_json::json!({"db": {"password": REDACTED, "host": "h"}})
        );
    }
}
