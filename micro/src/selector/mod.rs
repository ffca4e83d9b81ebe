//! Load balancing: which node of a service a call goes to.
//!
//! A [`Selector`] picks one node from the candidates the registry returned,
//! after the call's [`Filter`]s narrowed them. [`Random`] is the default;
//! [`RoundRobin`] spreads calls exactly evenly; [`LeastOutstanding`] sends
//! each call to the node with the fewest calls in flight.
//!
//! ```
//! use micro::registry::Node;
//! use micro::selector::{RoundRobin, Selector};
//!
//! let nodes = [Node::new("a", "127.0.0.1:1"), Node::new("b", "127.0.0.1:2")];
//! let rr = RoundRobin::new();
//! let picks: Vec<_> = (0..4).map(|_| rr.select("svc", &nodes).unwrap().id.clone()).collect();
//! assert_eq!(picks, ["a", "b", "a", "b"]);
//! ```

mod cooldown;

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use crate::registry::Node;

/// Picks a node for a call.
///
/// # Contract
/// - `select` returns one of `nodes`, or `None` only when `nodes` is empty.
/// - The client calls `mark` exactly once for every node `select` returned,
///   when that call is over: `reached` is false for a failure at the
///   connection level. A selector can count calls in flight or steer
///   around failing nodes with it.
/// - Both are called concurrently from many tasks and must not block.
///
/// # Example
///
/// A selector that always takes the first node, as a client would use it:
///
/// ```
/// use std::sync::Arc;
/// use micro::registry::Node;
/// use micro::selector::Selector;
///
/// #[derive(Debug)]
/// struct First;
///
/// impl Selector for First {
///     fn select<'a>(&self, _service: &str, nodes: &'a [Node]) -> Option<&'a Node> {
///         nodes.first()
///     }
/// }
///
/// let client = micro::Client::builder().selector(Arc::new(First)).build();
/// # drop(client);
/// ```
pub trait Selector: Send + Sync + fmt::Debug + 'static {
    /// Picks one of `nodes` for a call to `service`.
    fn select<'a>(&self, service: &str, nodes: &'a [Node]) -> Option<&'a Node>;

    /// Reports that a call to `node` is over. The default ignores it.
    fn mark(&self, service: &str, node: &Node, reached: bool) {
        let _ = (service, node, reached);
    }
}

pub use cooldown::Cooldown;

fn _assert_dyn(_: &dyn Selector) {}

/// Picks a node uniformly at random. The default.
#[derive(Clone, Debug, Default)]
pub struct Random {
    _priv: (),
}

impl Random {
    /// The random selector.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Selector for Random {
    fn select<'a>(&self, _service: &str, nodes: &'a [Node]) -> Option<&'a Node> {
        match nodes.len() {
            0 => None,
            1 => nodes.first(),
            n => nodes.get(random_below(n)),
        }
    }
}

/// A uniformly distributed index below `n` (n > 0), from the standard
/// library's randomly keyed hasher: good enough to spread load, no extra
/// dependency.
fn random_below(n: usize) -> usize {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new(RandomState::new().hash_one(0u64) | 1);
    }
    STATE.with(|s| {
        // xorshift64*
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        ((u128::from(r) * n as u128) >> 64) as usize
    })
}

/// Takes the nodes of each service in turn.
///
/// The rotation is per service and over the node list sorted by id, so
/// calls spread evenly even when the registry returns nodes in a different
/// order each time.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: Mutex<HashMap<String, usize>>,
}

impl Clone for RoundRobin {
    /// A round robin with its own, fresh rotation.
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl RoundRobin {
    /// A round-robin selector.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Selector for RoundRobin {
    fn select<'a>(&self, service: &str, nodes: &'a [Node]) -> Option<&'a Node> {
        if nodes.is_empty() {
            return None;
        }
        let turn = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let counter = match next.get_mut(service) {
                Some(c) => c,
                None => next.entry(service.to_owned()).or_default(),
            };
            let turn = *counter;
            *counter = counter.wrapping_add(1);
            turn
        };
        let mut sorted: Vec<&Node> = nodes.iter().collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        Some(sorted[turn % sorted.len()])
    }
}

/// Sends each call to the node with the fewest calls in flight from this
/// client; ties are broken at random. Slow or overloaded nodes get less
/// traffic without any configuration.
#[derive(Debug, Default)]
pub struct LeastOutstanding {
    /// node id -> calls selected and not yet marked.
    in_flight: Mutex<HashMap<String, usize>>,
}

impl LeastOutstanding {
    /// A least-outstanding-requests selector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls in flight to the node `id`, as this selector counts them.
    pub fn in_flight(&self, id: &str) -> usize {
        let counts = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(id).copied().unwrap_or(0)
    }
}

impl Selector for LeastOutstanding {
    fn select<'a>(&self, _service: &str, nodes: &'a [Node]) -> Option<&'a Node> {
        let mut counts = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let load = |n: &Node| counts.get(&n.id).copied().unwrap_or(0);
        let least = nodes.iter().map(load).min()?;
        let ties: Vec<&Node> = nodes.iter().filter(|n| load(n) == least).collect();
        let node = ties[random_below(ties.len())];
        *counts.entry(node.id.clone()).or_default() += 1;
        Some(node)
    }

    fn mark(&self, _service: &str, node: &Node, _reached: bool) {
        let mut counts = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&node.id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&node.id);
            }
        }
    }
}

/// Narrows the nodes a call may go to.
///
/// ```
/// use micro::registry::{Node, Record};
/// use micro::selector::Filter;
///
/// let v1 = Record::new("greeter").with_version("v1")
///     .with_node(Node::new("a", "127.0.0.1:1").with_metadata("zone", "eu"));
/// let v2 = Record::new("greeter").with_version("v2")
///     .with_node(Node::new("b", "127.0.0.1:2").with_metadata("zone", "us"));
/// let nodes = Filter::apply(&[Filter::version("v2")], &[v1.clone(), v2.clone()]);
/// assert_eq!(nodes[0].id, "b");
/// let nodes = Filter::apply(&[Filter::label("zone", "eu")], &[v1, v2]);
/// assert_eq!(nodes[0].id, "a");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Filter {
    /// Only nodes of this version.
    Version(String),
    /// Only nodes whose metadata has this key with this value.
    Label(String, String),
    /// Only nodes of a version that serves this endpoint.
    Endpoint(String),
}

impl Filter {
    /// Only nodes of `version`.
    pub fn version(version: impl Into<String>) -> Self {
        Filter::Version(version.into())
    }

    /// Only nodes whose metadata has `key` = `value`.
    pub fn label(key: impl Into<String>, value: impl Into<String>) -> Self {
        Filter::Label(key.into(), value.into())
    }

    /// Only nodes of a version that serves `endpoint`.
    pub fn endpoint(endpoint: impl Into<String>) -> Self {
        Filter::Endpoint(endpoint.into())
    }

    fn keeps_service(&self, service: &crate::registry::Record) -> bool {
        match self {
            Filter::Version(v) => service.version == *v,
            Filter::Endpoint(e) => service.endpoints.iter().any(|ep| ep.name == *e),
            Filter::Label(..) => true,
        }
    }

    fn keeps_node(&self, node: &Node) -> bool {
        match self {
            Filter::Label(k, v) => node.metadata.get(k) == Some(v),
            _ => true,
        }
    }

    /// The nodes of `services` that every filter keeps.
    pub fn apply(filters: &[Filter], services: &[crate::registry::Record]) -> Vec<Node> {
        services
            .iter()
            .filter(|s| filters.iter().all(|f| f.keeps_service(s)))
            .flat_map(|s| s.nodes.iter())
            .filter(|n| filters.iter().all(|f| f.keeps_node(n)))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<Node> {
        (0..n)
            .map(|i| Node::new(format!("n{i}"), format!("127.0.0.1:{i}")))
            .collect()
    }

    #[test]
    fn empty_is_none() {
        assert!(Random::new().select("s", &[]).is_none());
        assert!(RoundRobin::new().select("s", &[]).is_none());
    }

    #[test]
    fn random_hits_every_node_roughly_evenly() {
        let ns = nodes(3);
        let mut hits = HashMap::new();
        for _ in 0..3000 {
            *hits
                .entry(Random::new().select("s", &ns).unwrap().id.clone())
                .or_insert(0) += 1;
        }
        assert_eq!(hits.len(), 3);
        assert!(hits.values().all(|&h| h > 800), "{hits:?}");
    }

    #[test]
    fn round_robin_is_exact_per_service_and_order_independent() {
        let mut ns = nodes(3);
        let rr = RoundRobin::new();
        let mut hits = HashMap::new();
        for i in 0..300 {
            ns.rotate_left(i % 2);
            *hits
                .entry(rr.select("a", &ns).unwrap().id.clone())
                .or_insert(0) += 1;
        }
        assert_eq!(hits.values().copied().collect::<Vec<_>>(), [100, 100, 100]);
        // Another service has its own rotation.
        assert_eq!(rr.select("b", &ns).unwrap().id, "n0");
    }

    #[test]
    fn least_outstanding_prefers_idle_nodes() {
        let ns = nodes(3);
        let lo = LeastOutstanding::new();
        let a = lo.select("s", &ns).unwrap().clone();
        let b = lo.select("s", &ns).unwrap().clone();
        let c = lo.select("s", &ns).unwrap().clone();
        // Three calls in flight land on three different nodes.
        let mut ids = vec![a.id.clone(), b.id.clone(), c.id.clone()];
        ids.sort();
        assert_eq!(ids, ["n0", "n1", "n2"]);
        // When b's call ends, the next call goes to b.
        lo.mark("s", &b, true);
        assert_eq!(lo.select("s", &ns).unwrap().id, b.id);
        assert_eq!(lo.in_flight(&b.id), 1);
        lo.mark("s", &a, false);
        assert_eq!(lo.in_flight(&a.id), 0);
    }

    #[test]
    fn filters_combine() {
        use crate::registry::{Endpoint, Record};
        let v1 = Record::new("g")
            .with_version("v1")
            .with_endpoint(Endpoint::new("G.Old", "A", "B"))
            .with_node(Node::new("a", "x:1").with_metadata("zone", "eu"))
            .with_node(Node::new("b", "x:2").with_metadata("zone", "us"));
        let v2 = Record::new("g")
            .with_version("v2")
            .with_endpoint(Endpoint::new("G.New", "A", "B"))
            .with_node(Node::new("c", "x:3").with_metadata("zone", "eu"));
        let all = [v1, v2];
        let ids = |f: &[Filter]| -> Vec<String> {
            Filter::apply(f, &all).into_iter().map(|n| n.id).collect()
        };
        assert_eq!(ids(&[]), ["a", "b", "c"]);
        assert_eq!(ids(&[Filter::label("zone", "eu")]), ["a", "c"]);
        assert_eq!(ids(&[Filter::endpoint("G.New")]), ["c"]);
        assert_eq!(
            ids(&[Filter::version("v1"), Filter::label("zone", "us")]),
            ["b"]
        );
        assert!(ids(&[Filter::version("v3")]).is_empty());
    }
}
