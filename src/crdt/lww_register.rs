use super::{Crdt, ReplicaId};
use crate::clock::Timestamp;
use serde::{Deserialize, Serialize};

/// A last-writer-wins register: the write with the greatest `(timestamp, replica id)` wins.
///
/// Each replica stamps its writes with its own [`Hlc`](crate::clock::Hlc), whose timestamps
/// strictly increase, so `(timestamp, replica)` names one write; two different values under
/// the same pair are not a case the join has to order.
///
/// # Examples
/// ```
/// use herd::clock::Timestamp;
/// use herd::crdt::{Crdt, LwwRegister, ReplicaId};
/// let mut a = LwwRegister::new();
/// let mut b = LwwRegister::new();
/// a.set(ReplicaId::new(1), Timestamp::new(5, 0), "old");
/// let d = b.set(ReplicaId::new(2), Timestamp::new(6, 0), "new");
/// a.join(&d);
/// assert_eq!(a.get(), Some(&"new"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LwwRegister<V> {
    write: Option<(Timestamp, ReplicaId, V)>,
}

impl<V> Default for LwwRegister<V> {
    fn default() -> Self {
        LwwRegister { write: None }
    }
}

impl<V: Clone> LwwRegister<V> {
    /// An unset register.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `value` at `ts`; returns the delta. An older write than the current one is
    /// ignored and the delta is empty.
    pub fn set(&mut self, replica: ReplicaId, ts: Timestamp, value: V) -> Self {
        let delta = LwwRegister {
            write: Some((ts, replica, value)),
        };
        if self
            .write
            .as_ref()
            .is_none_or(|(t, r, _)| (ts, replica) > (*t, *r))
        {
            self.write = delta.write.clone();
            delta
        } else {
            LwwRegister::default()
        }
    }

    /// The current value.
    pub fn get(&self) -> Option<&V> {
        self.write.as_ref().map(|(_, _, v)| v)
    }

    /// The timestamp and writer of the current value.
    pub fn stamp(&self) -> Option<(Timestamp, ReplicaId)> {
        self.write.as_ref().map(|(t, r, _)| (*t, *r))
    }
}

impl<V: Clone + PartialEq + std::fmt::Debug> Crdt for LwwRegister<V> {
    fn join(&mut self, other: &Self) {
        if let Some((t, r, v)) = &other.write
            && self.stamp().is_none_or(|mine| (*t, *r) > mine)
        {
            self.write = Some((*t, *r, v.clone()));
        }
    }

    fn decompose(&self) -> Vec<Self> {
        self.write.iter().map(|_| self.clone()).collect()
    }

    fn delta(&self, other: &Self) -> Self {
        match (self.stamp(), other.stamp()) {
            (Some(mine), theirs) if theirs.is_none_or(|t| mine > t) => self.clone(),
            _ => Self::default(),
        }
    }

    fn is_bottom(&self) -> bool {
        self.write.is_none()
    }
}
