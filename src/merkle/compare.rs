//! A local, in-memory run of the descent the sync protocol performs, to test it and to
//! measure what it costs on the wire.

use super::{MerkleError, MerkleTree, NodePath};

/// What descending from the root to the differing leaf buckets of two trees found and cost,
/// under this model of the protocol: A sends its root digest; for each node whose digests
/// differ, A asks for it by path and B answers with its non-empty
/// [`children`](MerkleTree::children); at a differing leaf bucket B sends its
/// [`leaf_keys`](MerkleTree::leaf_keys). Requests for one level go in one round trip.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Leaf buckets whose digests differ, in increasing path order.
    pub differing_leaves: Vec<NodePath>,
    /// Round trips: one per level descended (0 if the roots are equal).
    pub rounds: u8,
    /// Node paths A sent to ask for children or keys.
    pub paths_sent: u64,
    /// Node digests sent (the root and each children list); 8 bytes each plus a child index.
    pub digests_sent: u64,
    /// (key hash, digest) pairs B sent from differing leaf buckets; 16 bytes each.
    pub leaf_entries_sent: u64,
}

impl Comparison {
    /// Bytes of digests exchanged on the descent (excluding leaf entries and framing).
    #[must_use]
    pub fn digest_bytes(&self) -> u64 {
        self.digests_sent * 8
    }

    /// Bytes of leaf (key hash, digest) pairs sent from the differing buckets.
    #[must_use]
    pub fn leaf_bytes(&self) -> u64 {
        self.leaf_entries_sent * 16
    }
}

impl MerkleTree {
    /// Runs the descent between `self` (A) and `other` (B) locally; see [`Comparison`].
    /// O(differing nodes · fan_out). For tests and measurements: the real protocol does this
    /// over the network, one level per round trip.
    ///
    /// # Errors
    ///
    /// [`MerkleError::ShapeMismatch`] if the trees have different shapes.
    pub fn compare(&self, other: &MerkleTree) -> Result<Comparison, MerkleError> {
        if self.shape() != other.shape() {
            return Err(MerkleError::ShapeMismatch);
        }
        let shape = self.shape();
        let mut out = Comparison {
            digests_sent: 1,
            ..Comparison::default()
        };
        let mut frontier = Vec::new();
        if self.root() != other.root() {
            frontier.push(NodePath::ROOT);
        }
        while !frontier.is_empty() {
            out.rounds += 1;
            out.paths_sent += frontier.len() as u64;
            let mut next = Vec::new();
            for path in frontier {
                if path.level == shape.depth {
                    out.leaf_entries_sent += other.node_len(path)?;
                    out.differing_leaves.push(path);
                    continue;
                }
                let theirs = other.children(path)?;
                out.digests_sent += theirs.len() as u64;
                for child in self.diff(path, &theirs)? {
                    next.push(path.child(&shape, child)?);
                }
            }
            frontier = next;
        }
        Ok(out)
    }
}
