//! Load balancing: which node of a service a call goes to.
//!
//! A [`Selector`] picks one node from the candidates the registry returned.
//! [`Random`] is the default; [`RoundRobin`] spreads calls evenly.
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

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use crate::registry::Node;

/// Picks a node for a call.
///
/// # Contract
/// - `select` returns one of `nodes`, or `None` only when `nodes` is empty.
/// - `mark` reports the outcome of a call to a node (`ok == false` for a
///   failure at the connection level), so a selector can steer around
///   failing nodes.
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

    /// Reports the outcome of a call to `node`. The default ignores it.
    fn mark(&self, service: &str, node: &Node, ok: bool) {
        let _ = (service, node, ok);
    }
}

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
}
