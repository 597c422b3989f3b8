use serde::{Deserialize, Serialize};
use std::fmt;

/// The identity of one replica: unique in the cluster for the replica's whole life.
///
/// herd draws it at random (64 bits) when a replica starts without persisted state, so a node
/// that lost its data comes back as a *new* replica and never reuses dots it issued before.
/// The core never draws randomness itself: the caller passes the id in.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReplicaId(u64);

impl ReplicaId {
    /// Wraps a raw id.
    pub const fn new(raw: u64) -> Self {
        ReplicaId(raw)
    }

    /// The raw id.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{:x}", self.0)
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The unique name of one write: the `counter`-th event issued by `replica` (counters start at 1).
///
/// Every value a causal CRDT stores is tagged with the dot of the write that created it; a
/// remove just forgets the values, and the [`CausalContext`](super::CausalContext) remembers that
/// their dots were seen, so no tombstone is kept per key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// The replica that issued the write.
    pub replica: ReplicaId,
    /// Its position in that replica's sequence of writes, from 1.
    pub counter: u64,
}

impl Dot {
    /// The `counter`-th write of `replica`.
    pub const fn new(replica: ReplicaId, counter: u64) -> Self {
        Dot { replica, counter }
    }
}

impl fmt::Debug for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}:{}", self.replica, self.counter)
    }
}
