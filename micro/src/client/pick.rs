//! Choosing a node for an attempt: the registry cache, the filters, the
//! selector, and the cool-down of nodes that could not be reached.

use std::sync::Arc;
use std::time::Instant;

use super::Client;
use crate::registry::Node;
use crate::selector::Filter;
use crate::{Error, Result};

impl Client {
    /// Remembers whether `address` could be reached: a node that could not
    /// is skipped for the cool-down, so a dead node stops getting traffic
    /// after one failed call rather than when its registration expires.
    pub(super) fn note_reached(&self, address: &str, reached: bool) {
        use std::sync::atomic::Ordering;
        if reached && self.inner.failing.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut failed = self.inner.failed.lock().unwrap_or_else(|e| e.into_inner());
        if reached {
            failed.remove(address);
        } else {
            failed.insert(address.to_owned(), Instant::now() + self.inner.cooldown);
        }
        self.inner.failing.store(failed.len(), Ordering::Relaxed);
    }

    /// A node of `service`, through the registry cache, the filters and the
    /// selector. Nodes this call already tried, and nodes cooling down after
    /// a failure, are taken only when there is nothing else.
    pub(super) async fn pick(
        &self,
        service: &str,
        filters: &[Filter],
        tried: &[String],
    ) -> Result<Picked> {
        let records = self.inner.lookup.get(service).await.map_err(Error::from)?;
        let none = || Error::unavailable(format!("service \"{service}\" has no nodes"));
        let unfiltered = filters.is_empty() && self.inner.filters.is_empty();
        if records.len() == 1
            && unfiltered
            && tried.is_empty()
            && self
                .inner
                .failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
        {
            // The common case borrows from the cached record: no copies.
            let nodes = &records[0].nodes;
            let chosen = self
                .inner
                .selector
                .select(service, nodes)
                .ok_or_else(none)?;
            let index = nodes
                .iter()
                .position(|n| std::ptr::eq(n, chosen))
                .ok_or_else(none)?;
            return Ok(Picked::Cached(records, index));
        }
        let mut nodes: Vec<Node> = if unfiltered {
            records
                .iter()
                .flat_map(|s| s.nodes.iter().cloned())
                .collect()
        } else {
            let all: Vec<Filter> = self.inner.filters.iter().chain(filters).cloned().collect();
            Filter::apply(&all, &records)
        };
        if nodes.is_empty() {
            return Err(Error::unavailable(format!(
                "no node of service \"{service}\" matches the call's filters"
            )));
        }
        let now = Instant::now();
        let cooling: Vec<String> = {
            let mut failed = self.inner.failed.lock().unwrap_or_else(|e| e.into_inner());
            failed.retain(|_, until| *until > now);
            self.inner
                .failing
                .store(failed.len(), std::sync::atomic::Ordering::Relaxed);
            nodes
                .iter()
                .filter(|n| failed.contains_key(&n.address))
                .map(|n| n.address.clone())
                .collect()
        };
        for avoid in [tried, cooling.as_slice()] {
            if avoid.is_empty() {
                continue;
            }
            let rest: Vec<Node> = nodes
                .iter()
                .filter(|n| !avoid.contains(&n.address))
                .cloned()
                .collect();
            if !rest.is_empty() {
                nodes = rest;
            }
        }
        let chosen = self
            .inner
            .selector
            .select(service, &nodes)
            .ok_or_else(none)?;
        Ok(Picked::Owned(chosen.clone()))
    }
}

/// The node a call goes to: borrowed from the cached records, or a copy
/// when filters or failures narrowed the choice.
pub(super) enum Picked {
    Cached(Arc<Vec<crate::registry::Service>>, usize),
    Owned(Node),
}

impl Picked {
    pub(super) fn node(&self) -> &Node {
        match self {
            Picked::Cached(records, index) => &records[0].nodes[*index],
            Picked::Owned(node) => node,
        }
    }
}
