//! Choosing a node for an attempt: the registry cache, the filters, the
//! nodes already tried and the selector.

use std::sync::Arc;

use super::Client;
use crate::registry::Node;
use crate::selector::Filter;
use crate::{Error, Result};

impl Client {
    /// A node of `service`, through the registry cache, the filters and the
    /// selector (which skips nodes cooling down after a failure). Nodes
    /// this call already tried are taken only when there is nothing else.
    pub(super) async fn pick(
        &self,
        service: &str,
        filters: &[Filter],
        tried: &[String],
    ) -> Result<Picked> {
        let records = self.inner.lookup.get(service).await.map_err(Error::from)?;
        let none = || Error::unavailable(format!("service \"{service}\" has no nodes"));
        let unfiltered = filters.is_empty() && self.inner.filters.is_empty();
        if records.len() == 1 && unfiltered && tried.is_empty() {
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
        if !tried.is_empty() {
            let rest: Vec<Node> = nodes
                .iter()
                .filter(|n| !tried.contains(&n.address))
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
    Cached(Arc<Vec<crate::registry::Record>>, usize),
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
