//! The routing state of one Vault cluster (one address list, `https://a,https://b`): it
//! bounds the requests in flight to that cluster (`-vault-concurrency`, counted across its
//! nodes), remembers the node that last answered well, and keeps failing nodes out of the
//! way for a cool-down. Shared by every Mount that names the same list.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// How long a node that failed is tried only after the others.
pub const NODE_COOL_DOWN: Duration = Duration::from_secs(10);

/// Routing state of one Vault cluster (one address list).
pub struct Cluster {
    /// Bounds requests in flight to the whole cluster.
    pub(super) limit: Semaphore,
    /// The node that last answered well.
    preferred: AtomicUsize,
    /// Until when each node is tried only after the others.
    down_until: Mutex<Vec<Option<Instant>>>,
}

impl Cluster {
    pub(super) fn new(nodes: usize, concurrency: usize) -> Self {
        Cluster {
            limit: Semaphore::new(concurrency),
            preferred: AtomicUsize::new(0),
            down_until: Mutex::new(vec![None; nodes]),
        }
    }

    /// The order to try nodes in: the one that last answered well, then the others in
    /// list order, then those cooling down (soonest back first).
    pub(super) fn order(&self, now: Instant) -> Vec<usize> {
        let down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        let n = down.len();
        let preferred = self.preferred.load(Ordering::Relaxed) % n.max(1);
        let cooling = |i: usize| down[i].is_some_and(|t| t > now);
        let mut order: Vec<usize> = std::iter::once(preferred)
            .chain((0..n).filter(|i| *i != preferred))
            .filter(|i| !cooling(*i))
            .collect();
        let mut cold: Vec<usize> = (0..n).filter(|i| cooling(*i)).collect();
        cold.sort_by_key(|i| down[*i]);
        order.extend(cold);
        order
    }

    /// Node `i` answered well: prefer it.
    pub(super) fn good(&self, i: usize) {
        self.preferred.store(i, Ordering::Relaxed);
        let mut down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = down.get_mut(i) {
            *d = None;
        }
    }

    /// Node `i` failed: try it after the others until the cool-down has passed.
    pub(super) fn bad(&self, i: usize, now: Instant) {
        let mut down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = down.get_mut(i) {
            *d = Some(now + NODE_COOL_DOWN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn routing_prefers_the_last_good_node_and_cools_failing_ones() {
        let c = Cluster::new(3, 4);
        let now = Instant::now();
        assert_eq!(c.order(now), vec![0, 1, 2]);
        c.bad(0, now);
        assert_eq!(c.order(now), vec![1, 2, 0], "a failed node goes last");
        c.good(2);
        assert_eq!(
            c.order(now),
            vec![2, 1, 0],
            "the node that answered goes first"
        );
        c.bad(1, now + Duration::from_secs(1));
        assert_eq!(
            c.order(now),
            vec![2, 0, 1],
            "cooling nodes, soonest back first"
        );
        tokio::time::advance(NODE_COOL_DOWN + Duration::from_secs(2)).await;
        assert_eq!(c.order(Instant::now()), vec![2, 0, 1], "back in list order");
    }
}
