use super::causal::causal_newtype;
use super::{Causal, CausalContext, Crdt, DotFun, ReplicaId};
use serde::{Deserialize, Serialize};

/// A causal counter that goes up and down: the counter that sits inside an
/// [`OrMap`](super::OrMap), so a map of counters can remove (reset) a key.
///
/// Each replica keeps one entry, its running total, under the dot of its last change; a change
/// replaces the replica's own previous entry, so the store holds at most one entry per replica
/// that has counted. The value is the sum of the entries.
///
/// Removing the counter (from the map holding it) removes the entries it has seen. A change
/// made concurrently by another replica survives *with that replica's whole running total*
/// (the remove had not seen it): the remove is a reset of what it saw, not a subtraction.
/// [`PnCounter`](super::PnCounter) is the plain counter for where no reset is needed.
///
/// # Examples
/// ```
/// use herd::crdt::{Counter, Crdt, ReplicaId};
/// let mut a = Counter::new();
/// let mut b = Counter::new();
/// a.increment(ReplicaId::new(1), 5);
/// let d = b.decrement(ReplicaId::new(2), 2);
/// a.join(&d);
/// assert_eq!(a.value(), 3);
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Counter {
    inner: Causal<DotFun<i64>>,
}

impl Default for Counter {
    fn default() -> Self {
        Counter {
            inner: Causal {
                store: DotFun::default(),
                ctx: CausalContext::new(),
                keyed: false,
            },
        }
    }
}

causal_newtype!(Counter [] [] store = DotFun<i64>; where);

impl Counter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `by` (saturating); returns the delta. Adding 0 changes nothing.
    pub fn increment(&mut self, replica: ReplicaId, by: u64) -> Self {
        self.change(replica, |total| total.saturating_add_unsigned(by), by == 0)
    }

    /// Subtracts `by` (saturating); returns the delta. Subtracting 0 changes nothing.
    pub fn decrement(&mut self, replica: ReplicaId, by: u64) -> Self {
        self.change(replica, |total| total.saturating_sub_unsigned(by), by == 0)
    }

    /// The sum of every replica's total (saturating).
    pub fn value(&self) -> i64 {
        sum(&self.inner.store)
    }

    fn change(&mut self, replica: ReplicaId, f: impl FnOnce(i64) -> i64, noop: bool) -> Self {
        if noop {
            return Self::default();
        }
        let mut ctx = CausalContext::new();
        let mut total = 0i64;
        for (dot, n) in self.inner.store.iter() {
            if dot.replica == replica {
                ctx.insert(dot);
                total = total.saturating_add(*n);
            }
        }
        let dot = self.inner.ctx.next_dot(replica);
        ctx.insert(dot);
        let delta = Causal::keyed(DotFun::single(dot, f(total)), ctx);
        self.inner.join(&delta);
        Counter { inner: delta }
    }
}

/// The value of a counter's store.
pub(crate) fn sum(store: &DotFun<i64>) -> i64 {
    store
        .iter()
        .fold(0i64, |acc, (_, n)| acc.saturating_add(*n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_keeps_a_concurrent_change_of_another_replica() {
        use crate::crdt::OrMap;
        let (a_id, b_id) = (ReplicaId::new(1), ReplicaId::new(2));
        let mut a: OrMap<&str, Counter> = OrMap::new();
        a.update("hits", |c| c.increment(a_id, 3));
        let mut b = a.clone();
        let reset = a.remove(&"hits");
        let more = b.update("hits", |c| c.increment(b_id, 2));
        a.join(&more);
        b.join(&reset);
        assert_eq!(a, b);
        assert_eq!(a.get(&"hits").map(|c| c.value()), Some(2));
        // A counter reset by its own replica starts again from zero.
        let again = a.update("hits", |c| c.increment(a_id, 1));
        b.join(&again);
        assert_eq!(b.get(&"hits").map(|c| c.value()), Some(3));
    }
}
