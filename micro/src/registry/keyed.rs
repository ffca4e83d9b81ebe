//! What the registries that keep one key per node (NATS KV, etcd) share:
//! merging the nodes' records into one per service version, and turning a
//! key's change into a watch event.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};

use super::{Event, EventKind, Record};

/// Records of one node each, merged into one record per service version.
pub(super) fn merge(nodes: Vec<Record>) -> Vec<Record> {
    let mut by: BTreeMap<(String, String), Record> = BTreeMap::new();
    for one in nodes {
        match by.entry((one.name.clone(), one.version.clone())) {
            Entry::Vacant(v) => {
                v.insert(one);
            }
            Entry::Occupied(mut o) => o.get_mut().nodes.extend(one.nodes),
        }
    }
    by.into_values().collect()
}

/// The records of the service `name` from its nodes' records, or
/// not found when it has none.
pub(super) fn found(name: &str, nodes: Vec<Record>) -> Result<Vec<Record>, super::RegistryError> {
    let records = merge(nodes);
    if records.is_empty() {
        return Err(super::RegistryError::NotFound(name.to_owned()));
    }
    Ok(records)
}

/// The nodes a watcher knows, by key, so that a key's change becomes the
/// event of its whole service version.
#[derive(Debug, Default)]
pub(super) struct Known(HashMap<String, Record>);

impl Known {
    /// The other nodes of `record`'s service version.
    fn siblings(&self, record: &Record, except: &str) -> Vec<super::Node> {
        self.0
            .iter()
            .filter(|(k, o)| {
                k.as_str() != except && o.name == record.name && o.version == record.version
            })
            .flat_map(|(_, o)| o.nodes.clone())
            .collect()
    }

    /// Notes `record` (of one node) at `key`, without an event: what the
    /// registry held when the watch began.
    pub(super) fn insert(&mut self, key: String, record: Record) {
        self.0.insert(key, record);
    }

    /// `key` now holds `record`: a create when its version had no nodes,
    /// else an update with every node of the version; nothing when the
    /// record is what it was (a renewal).
    pub(super) fn put(&mut self, key: String, record: Record) -> Option<Event> {
        if self.0.get(&key) == Some(&record) {
            return None;
        }
        let others = self.siblings(&record, &key);
        let kind = if others.is_empty() && !self.0.contains_key(&key) {
            EventKind::Create
        } else {
            EventKind::Update
        };
        self.0.insert(key, record.clone());
        let mut service = record;
        service.nodes.extend(others);
        Some(Event { kind, service })
    }

    /// `key` is gone: a delete when it was its version's last node, else an
    /// update with the nodes left; nothing for a key never seen.
    pub(super) fn remove(&mut self, key: &str) -> Option<Event> {
        let gone = self.0.remove(key)?;
        let others = self.siblings(&gone, key);
        Some(if others.is_empty() {
            Event {
                kind: EventKind::Delete,
                service: gone,
            }
        } else {
            let mut service = gone;
            service.nodes = others;
            Event {
                kind: EventKind::Update,
                service,
            }
        })
    }
}
