//! The one error type of the module.

use thiserror::Error;

use super::{Digest, KeyHash};

/// Why a Merkle tree operation was refused. No variant leaves the tree changed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum MerkleError {
    /// The [`Shape`](super::Shape) is unusable: the fan-out must be a power of two in
    /// 2..=256, the depth at least 1, and `log2(fan_out) * depth` at most 64.
    /// Returned by constructors; nothing was built.
    #[error("invalid shape: fan_out {fan_out}, depth {depth}")]
    InvalidShape {
        /// The fan-out given.
        fan_out: u16,
        /// The depth given.
        depth: u8,
    },
    /// A [`NodePath`](super::NodePath) does not name a node of this shape (too deep, or an
    /// index past the level's width). Typical of a peer with another shape or a corrupt
    /// message. The tree is unchanged.
    #[error("node path out of range: level {level}, index {index}")]
    PathOutOfRange {
        /// The level asked for.
        level: u8,
        /// The index asked for.
        index: u64,
    },
    /// Children were asked of a leaf bucket; ask for its keys instead. The tree is unchanged.
    #[error("level {level} is the leaf level and has no children")]
    NoChildren {
        /// The leaf level.
        level: u8,
    },
    /// A list of children from a peer is malformed: an index not below the fan-out, or
    /// indices not strictly increasing. Nothing was compared.
    #[error(
        "malformed children list: index {index} (fan_out {fan_out}) out of range or out of order"
    )]
    MalformedChildren {
        /// The first offending index.
        index: u16,
        /// This tree's fan-out.
        fan_out: u16,
    },
    /// [`update`](super::MerkleTree::update) was told an old digest the tree does not hold
    /// for that key: the caller's view and the tree disagree. The tree is unchanged.
    #[error("stale update of {key:?}: expected {expected:?}, tree holds {found:?}")]
    StaleUpdate {
        /// The key updated.
        key: KeyHash,
        /// The old digest the caller gave.
        expected: Option<Digest>,
        /// The digest the tree holds.
        found: Option<Digest>,
    },
    /// Two trees of different shapes were compared. Nothing was compared.
    #[error("shape mismatch")]
    ShapeMismatch,
}
