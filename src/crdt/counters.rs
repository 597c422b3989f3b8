use super::{Crdt, ReplicaId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A grow-only counter: each replica counts its own increments; the value is the sum.
///
/// # Examples
/// ```
/// use herd::crdt::{Crdt, GCounter, ReplicaId};
/// let mut a = GCounter::new();
/// let mut b = GCounter::new();
/// a.increment(ReplicaId::new(1), 3);
/// let d = b.increment(ReplicaId::new(2), 4);
/// a.join(&d);
/// assert_eq!(a.value(), 7);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "BTreeMap<ReplicaId, u64>", into = "BTreeMap<ReplicaId, u64>")]
pub struct GCounter {
    /// Never holds a zero count, so that equal counters compare equal.
    counts: BTreeMap<ReplicaId, u64>,
}

impl GCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `by` to `replica`'s count (saturating); returns the delta.
    pub fn increment(&mut self, replica: ReplicaId, by: u64) -> Self {
        if by == 0 {
            return GCounter::new();
        }
        let count = self.counts.entry(replica).or_insert(0);
        *count = count.saturating_add(by);
        GCounter {
            counts: BTreeMap::from([(replica, *count)]),
        }
    }

    /// The sum of all replicas' counts (saturating).
    pub fn value(&self) -> u64 {
        self.counts.values().fold(0u64, |a, &b| a.saturating_add(b))
    }
}

impl From<BTreeMap<ReplicaId, u64>> for GCounter {
    fn from(mut counts: BTreeMap<ReplicaId, u64>) -> Self {
        counts.retain(|_, n| *n > 0);
        GCounter { counts }
    }
}

impl From<GCounter> for BTreeMap<ReplicaId, u64> {
    fn from(c: GCounter) -> Self {
        c.counts
    }
}

impl Crdt for GCounter {
    fn join(&mut self, other: &Self) {
        for (&r, &n) in &other.counts {
            let mine = self.counts.entry(r).or_insert(0);
            *mine = (*mine).max(n);
        }
        self.counts.retain(|_, n| *n > 0);
    }

    fn decompose(&self) -> Vec<Self> {
        self.counts
            .iter()
            .filter(|&(_, &n)| n > 0)
            .map(|(&r, &n)| GCounter {
                counts: BTreeMap::from([(r, n)]),
            })
            .collect()
    }

    fn delta(&self, other: &Self) -> Self {
        GCounter {
            counts: self
                .counts
                .iter()
                .filter(|&(r, &n)| n > other.counts.get(r).copied().unwrap_or(0))
                .map(|(&r, &n)| (r, n))
                .collect(),
        }
    }

    fn is_bottom(&self) -> bool {
        self.counts.values().all(|&n| n == 0)
    }
}

/// A counter that goes up and down: a pair of grow-only counters.
///
/// # Examples
/// ```
/// use herd::crdt::{Crdt, PnCounter, ReplicaId};
/// let mut a = PnCounter::new();
/// a.increment(ReplicaId::new(1), 5);
/// a.decrement(ReplicaId::new(1), 7);
/// assert_eq!(a.value(), -2);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PnCounter {
    up: GCounter,
    down: GCounter,
}

impl PnCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `by`; returns the delta.
    pub fn increment(&mut self, replica: ReplicaId, by: u64) -> Self {
        PnCounter {
            up: self.up.increment(replica, by),
            down: GCounter::new(),
        }
    }

    /// Subtracts `by`; returns the delta.
    pub fn decrement(&mut self, replica: ReplicaId, by: u64) -> Self {
        PnCounter {
            up: GCounter::new(),
            down: self.down.increment(replica, by),
        }
    }

    /// Increments minus decrements.
    pub fn value(&self) -> i128 {
        i128::from(self.up.value()) - i128::from(self.down.value())
    }
}

impl Crdt for PnCounter {
    fn join(&mut self, other: &Self) {
        self.up.join(&other.up);
        self.down.join(&other.down);
    }

    fn decompose(&self) -> Vec<Self> {
        let ups = self.up.decompose().into_iter().map(|up| PnCounter {
            up,
            down: GCounter::new(),
        });
        let downs = self.down.decompose().into_iter().map(|down| PnCounter {
            up: GCounter::new(),
            down,
        });
        ups.chain(downs).collect()
    }

    fn delta(&self, other: &Self) -> Self {
        PnCounter {
            up: self.up.delta(&other.up),
            down: self.down.delta(&other.down),
        }
    }

    fn is_bottom(&self) -> bool {
        self.up.is_bottom() && self.down.is_bottom()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (found by the law suite): an increment by 0 stored a zero count, so a
    /// counter joined with itself compared unequal to itself.
    #[test]
    fn increment_by_zero_is_bottom() {
        let mut c = PnCounter::new();
        assert!(c.decrement(ReplicaId::new(1), 0).is_bottom());
        let mut twice = c.clone();
        twice.join(&c);
        assert_eq!(twice, c);
        assert_eq!(c, PnCounter::new());
    }
}
