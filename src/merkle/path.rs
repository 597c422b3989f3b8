//! The fixed shape of the tree and the addresses of its nodes.

use serde::{Deserialize, Serialize};

use super::{KeyHash, MerkleError};

/// The fixed shape of a tree. Every replica that compares trees must use the same shape.
///
/// A key lands in the leaf bucket named by the top `log2(fan_out) * depth` bits of its
/// [`KeyHash`]; the node above it at level `l` is named by the top `log2(fan_out) * l` bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape {
    /// Children per interior node: a power of two in 2..=256. Default 16.
    pub fan_out: u16,
    /// Levels below the root; the leaf buckets are at level `depth`. At least 1, and
    /// `log2(fan_out) * depth <= 64`. Default 4 (16⁴ = 65,536 leaf buckets).
    pub depth: u8,
}

impl Default for Shape {
    /// Fan-out 16, depth 4: see the module docs for the measurement behind it.
    fn default() -> Self {
        Self {
            fan_out: 16,
            depth: 4,
        }
    }
}

impl Shape {
    /// Checks the shape is usable.
    ///
    /// # Errors
    ///
    /// [`MerkleError::InvalidShape`] if the fan-out is not a power of two in 2..=256, the
    /// depth is 0, or the leaf buckets would need more than the 64 bits of a [`KeyHash`].
    pub fn validate(&self) -> Result<(), MerkleError> {
        let ok = self.fan_out.is_power_of_two()
            && (2..=256).contains(&self.fan_out)
            && self.depth >= 1
            && u32::from(self.bits()) * u32::from(self.depth) <= 64;
        if ok {
            Ok(())
        } else {
            Err(MerkleError::InvalidShape {
                fan_out: self.fan_out,
                depth: self.depth,
            })
        }
    }

    /// Number of leaf buckets, `fan_out ^ depth` (saturating at `u64::MAX`).
    #[must_use]
    pub fn leaf_buckets(&self) -> u64 {
        u64::from(self.fan_out).saturating_pow(u32::from(self.depth))
    }

    /// Bits of the key hash consumed per level.
    pub(crate) fn bits(&self) -> u8 {
        // trailing_zeros of a power of two is its log2; at most 15 for a u16.
        self.fan_out.trailing_zeros() as u8
    }

    /// Index of the node at `level` that holds `key` (a valid shape is assumed).
    pub(crate) fn index_of(&self, key: KeyHash, level: u8) -> u64 {
        let used = u32::from(self.bits()) * u32::from(level);
        // Level 0 uses no bits: a shift by 64 overflows, and checked_shr gives None -> 0.
        key.0.checked_shr(64 - used).unwrap_or(0)
    }

    /// Checks that `path` names a node of this shape.
    pub(crate) fn check(&self, path: NodePath) -> Result<(), MerkleError> {
        let used = u32::from(self.bits()) * u32::from(path.level);
        let in_range = path.level <= self.depth && path.index.checked_shr(used).unwrap_or(0) == 0;
        if in_range {
            Ok(())
        } else {
            Err(MerkleError::PathOutOfRange {
                level: path.level,
                index: path.index,
            })
        }
    }

    /// The smallest and largest key hash under `path` (a checked path is assumed).
    pub(crate) fn key_range(&self, path: NodePath) -> (KeyHash, KeyHash) {
        let free = 64 - u32::from(self.bits()) * u32::from(path.level);
        let low = path.index.checked_shl(free).unwrap_or(0);
        let span = u64::MAX.checked_shr(64 - free).unwrap_or(0);
        (KeyHash(low), KeyHash(low | span))
    }
}

/// The address of a node: its level (0 = root, `depth` = leaf buckets) and its index among
/// the `fan_out ^ level` nodes of that level. Small and serde-serialisable so the sync
/// protocol can put it on the wire; a path received from a peer is checked before use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodePath {
    /// Level, 0 for the root.
    pub level: u8,
    /// Index within the level, `0..fan_out^level`.
    pub index: u64,
}

impl NodePath {
    /// The root.
    pub const ROOT: NodePath = NodePath { level: 0, index: 0 };

    /// The path of child `child` (in `0..fan_out`) of this node.
    ///
    /// # Errors
    ///
    /// [`MerkleError::PathOutOfRange`] if this path is not a node of `shape`,
    /// [`MerkleError::NoChildren`] if it is a leaf bucket, and
    /// [`MerkleError::MalformedChildren`] if `child` is not below the fan-out.
    pub fn child(self, shape: &Shape, child: u16) -> Result<NodePath, MerkleError> {
        shape.check(self)?;
        if self.level >= shape.depth {
            return Err(MerkleError::NoChildren { level: self.level });
        }
        if child >= shape.fan_out {
            return Err(MerkleError::MalformedChildren {
                index: child,
                fan_out: shape.fan_out,
            });
        }
        // Fits: level + 1 <= depth, so the shifted index uses at most 64 bits.
        Ok(NodePath {
            level: self.level + 1,
            index: (self.index << shape.bits()) | u64::from(child),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_validated() {
        assert!(Shape::default().validate().is_ok());
        assert!(
            Shape {
                fan_out: 256,
                depth: 8
            }
            .validate()
            .is_ok()
        );
        assert!(
            Shape {
                fan_out: 2,
                depth: 64
            }
            .validate()
            .is_ok()
        );
        for bad in [(3, 4), (1, 4), (512, 2), (16, 0), (16, 17), (256, 9)] {
            let shape = Shape {
                fan_out: bad.0,
                depth: bad.1,
            };
            assert!(shape.validate().is_err(), "{shape:?}");
        }
    }

    #[test]
    fn full_width_shape_does_not_overflow() {
        let shape = Shape {
            fan_out: 256,
            depth: 8,
        };
        let key = KeyHash(u64::MAX);
        assert_eq!(shape.index_of(key, 0), 0);
        assert_eq!(shape.index_of(key, 8), u64::MAX);
        let leaf = NodePath {
            level: 8,
            index: u64::MAX,
        };
        assert!(shape.check(leaf).is_ok());
        assert_eq!(shape.key_range(leaf), (key, key));
        assert_eq!(
            shape.key_range(NodePath::ROOT),
            (KeyHash(0), KeyHash(u64::MAX))
        );
    }

    #[test]
    fn paths_from_peers_are_checked() {
        let shape = Shape::default();
        assert!(shape.check(NodePath { level: 5, index: 0 }).is_err());
        assert!(
            shape
                .check(NodePath {
                    level: 1,
                    index: 16
                })
                .is_err()
        );
        assert!(shape.check(NodePath { level: 0, index: 1 }).is_err());
        assert!(
            shape
                .check(NodePath {
                    level: 4,
                    index: 65_535
                })
                .is_ok()
        );
        assert!(NodePath::ROOT.child(&shape, 16).is_err());
        let leaf = NodePath { level: 4, index: 3 };
        assert_eq!(
            leaf.child(&shape, 0),
            Err(MerkleError::NoChildren { level: 4 })
        );
        assert_eq!(
            NodePath::ROOT.child(&shape, 15),
            Ok(NodePath {
                level: 1,
                index: 15
            })
        );
    }

    #[test]
    fn child_key_ranges_nest() {
        let shape = Shape::default();
        let key = KeyHash(0xDEAD_BEEF_0123_4567);
        let mut path = NodePath::ROOT;
        for level in 1..=shape.depth {
            let idx = shape.index_of(key, level);
            let child = (idx & u64::from(shape.fan_out - 1)) as u16;
            path = path.child(&shape, child).expect("in range");
            assert_eq!(path, NodePath { level, index: idx });
            let (lo, hi) = shape.key_range(path);
            assert!(lo <= key && key <= hi);
        }
    }
}
