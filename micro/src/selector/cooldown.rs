//! [`Cooldown`]: skips nodes that could not be reached, for a while.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Selector;
use crate::registry::Node;

/// Wraps a selector so that a node a call could not reach is skipped for
/// `period`, while other nodes are there: a dead node costs one failed
/// call, not one per call until its registration expires. The client puts
/// its selector in one (`ClientBuilder::cooldown`, 5 s by default).
///
/// A node counts as failed when [`mark`](Selector::mark) says it was not
/// reached, and as healthy again when a call reaches it. Marks go on to
/// the inner selector too.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use micro::registry::Node;
/// use micro::selector::{Cooldown, RoundRobin, Selector};
///
/// let selector = Cooldown::new(Arc::new(RoundRobin::new()), Duration::from_secs(5));
/// let nodes = [Node::new("a", "10.0.0.1:80"), Node::new("b", "10.0.0.2:80")];
/// selector.mark("svc", &nodes[0], false);
/// for _ in 0..4 {
///     assert_eq!(selector.select("svc", &nodes).unwrap().id, "b");
/// }
/// ```
pub struct Cooldown {
    inner: Arc<dyn Selector>,
    period: Duration,
    /// Node address -> until when it is skipped.
    failed: Mutex<HashMap<String, Instant>>,
    /// The number of entries in `failed`, kept under its lock, so that a
    /// selection takes no lock while no node has failed.
    failing: AtomicUsize,
}

impl fmt::Debug for Cooldown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cooldown")
            .field("inner", &self.inner)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl Cooldown {
    /// `inner`, skipping unreachable nodes for `period`.
    pub fn new(inner: Arc<dyn Selector>, period: Duration) -> Self {
        Self {
            inner,
            period,
            failed: Mutex::default(),
            failing: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Selector for Cooldown {
    fn select<'a>(&self, service: &str, nodes: &'a [Node]) -> Option<&'a Node> {
        if self.failing.load(Ordering::Relaxed) == 0 {
            return self.inner.select(service, nodes);
        }
        let now = Instant::now();
        let rest: Vec<Node> = {
            let mut failed = self.lock();
            failed.retain(|_, until| *until > now);
            self.failing.store(failed.len(), Ordering::Relaxed);
            nodes
                .iter()
                .filter(|n| !failed.contains_key(&n.address))
                .cloned()
                .collect()
        };
        // Nothing cooling among these, or nothing else: choose among all.
        if rest.len() == nodes.len() || rest.is_empty() {
            return self.inner.select(service, nodes);
        }
        let chosen = self.inner.select(service, &rest)?;
        nodes
            .iter()
            .find(|n| n.id == chosen.id && n.address == chosen.address)
    }

    fn mark(&self, service: &str, node: &Node, reached: bool) {
        self.inner.mark(service, node, reached);
        if reached && self.failing.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut failed = self.lock();
        if reached {
            failed.remove(&node.address);
        } else {
            failed.insert(node.address.clone(), Instant::now() + self.period);
        }
        self.failing.store(failed.len(), Ordering::Relaxed);
    }
}
