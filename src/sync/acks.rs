//! Read-only queries on acknowledgements, for writes that wait for the neighbours (the
//! replica's write concern).

use super::{MapCrdt, SyncState};

impl<C: MapCrdt, P: Ord + Clone + std::fmt::Debug> SyncState<C, P> {
    /// The sequence number of the newest local delta buffered for the neighbours: every local
    /// change made so far is in a delta numbered at most this.
    pub(crate) fn delta_head(&self) -> u64 {
        self.head
    }

    /// How many of `neighbours` acknowledged every delta up to `seq` (or were sent nothing it
    /// lacked in that range). A neighbour that is no longer one does not count.
    pub(crate) fn acknowledged(&self, seq: u64, neighbours: &[P]) -> usize {
        neighbours
            .iter()
            .filter(|p| self.neighbours.get(p).is_some_and(|n| n.acked >= seq))
            .count()
    }
}
