//! When a lease ran out, for backends whose store keeps no lease of its
//! own (NATS KV, etcd): as its waiters see it.
//!
//! A lock whose key was not rewritten for its time to live, timed by the
//! waiter's own monotonic clock from when it first saw that revision, has
//! run out; clocks need not agree for that. A waiter that first looks long
//! after a holder died also judges it over at once when the key's last
//! write is more than twice the time to live plus a second old by the
//! waiter's wall clock; only clocks more than a second apart would shorten
//! a lease that way.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How far two machines' clocks may be apart before a lease could be
/// judged over early by a write's timestamp alone.
const CLOCK_SKEW: Duration = Duration::from_secs(1);

/// How many locks' last seen revisions are remembered before they are all
/// forgotten (and a lease is waited out again).
const SEEN: usize = 16 * 1024;

/// Per lock: the revision last seen held by another, and since when.
#[derive(Debug, Default)]
pub(super) struct Sightings {
    seen: Mutex<HashMap<String, (u64, Instant)>>,
}

impl Sightings {
    /// Whether the lease on `name`, last written at `revision` for `ttl`,
    /// `written` milliseconds after the epoch, has run out.
    pub(super) fn ended(&self, name: &str, revision: u64, ttl: Duration, written: i128) -> bool {
        let now = Instant::now();
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            match seen.get(name) {
                Some(&(seen_revision, since)) if seen_revision == revision => {
                    if now.duration_since(since) >= ttl {
                        return true;
                    }
                }
                _ => {
                    if seen.len() >= SEEN {
                        seen.clear();
                    }
                    seen.insert(name.to_owned(), (revision, now));
                }
            }
        }
        let long_ago = i128::try_from((ttl * 2 + CLOCK_SKEW).as_millis()).unwrap_or(i128::MAX);
        unix_millis() - written > long_ago
    }

    /// Forgets `name`, taken by this backend.
    pub(super) fn forget(&self, name: &str) {
        (self.seen.lock().unwrap_or_else(|e| e.into_inner())).remove(name);
    }
}

/// Milliseconds since the epoch by this machine's clock.
pub(super) fn unix_millis() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_millis()).unwrap_or(i128::MAX))
}
