//! The tree itself: sparse nodes holding wrapping sums of key contributions.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use super::hash::contribution;
use super::{Digest, KeyHash, MerkleError, NodePath, Shape};

/// A fixed-shape Merkle tree over the keys of one replica.
///
/// Holds, per key, the digest the caller gave, and per non-empty node the wrapping sum of
/// the contributions of the keys below it. Empty nodes are not stored, so memory is
/// proportional to the number of keys (at most `depth` nodes per key), not to the shape.
///
/// # Examples
///
/// ```
/// use herd::merkle::{Digest, KeyHash, MerkleTree, NodePath};
///
/// let mut a = MerkleTree::default();
/// let mut b = MerkleTree::default();
/// for k in 0..100u32 {
///     let (key, digest) = (KeyHash::of(&k.to_le_bytes()), Digest::of(b"v1"));
///     a.insert(key, digest);
///     b.insert(key, digest);
/// }
/// b.insert(KeyHash::of(&7u32.to_le_bytes()), Digest::of(b"v2"));
/// assert_ne!(a.root(), b.root());
///
/// // Descend: only the children whose digests differ are worth asking about.
/// let theirs = b.children(NodePath::ROOT)?;
/// assert_eq!(a.diff(NodePath::ROOT, &theirs)?.len(), 1);
/// # Ok::<(), herd::merkle::MerkleError>(())
/// ```
#[derive(Clone, Debug)]
pub struct MerkleTree {
    shape: Shape,
    /// Sorted by key hash, so the keys of any node are one contiguous range.
    keys: BTreeMap<KeyHash, Digest>,
    root: Node,
    /// `levels[l - 1]` holds the non-empty nodes of level `l`, by index.
    levels: Vec<HashMap<u64, Node, IndexHasherBuilder>>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Node {
    /// Wrapping sum of the contributions of the keys below.
    sum: u64,
    /// Keys below; the node is dropped when it reaches 0 (a sum of 0 does not mean empty).
    count: u64,
}

impl Default for MerkleTree {
    /// An empty tree of the default [`Shape`].
    fn default() -> Self {
        Self::build(Shape::default())
    }
}

impl MerkleTree {
    /// An empty tree of the given shape.
    ///
    /// # Errors
    ///
    /// [`MerkleError::InvalidShape`] if `shape` does not [validate](Shape::validate).
    pub fn new(shape: Shape) -> Result<Self, MerkleError> {
        shape.validate()?;
        Ok(Self::build(shape))
    }

    fn build(shape: Shape) -> Self {
        let levels = (0..shape.depth).map(|_| HashMap::default()).collect();
        Self {
            shape,
            keys: BTreeMap::new(),
            root: Node::default(),
            levels,
        }
    }

    /// The shape this tree was built with.
    #[must_use]
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Number of keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the tree holds no key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Number of non-empty nodes stored below the root: a gauge of memory use, at most
    /// `len() * depth`.
    #[must_use]
    pub fn node_count(&self) -> usize {
        self.levels.iter().map(HashMap::len).sum()
    }

    /// The digest the tree holds for `key`, if any.
    #[must_use]
    pub fn get(&self, key: KeyHash) -> Option<Digest> {
        self.keys.get(&key).copied()
    }

    /// Sets the digest of `key`, returning the previous one. O(depth).
    pub fn insert(&mut self, key: KeyHash, digest: Digest) -> Option<Digest> {
        self.set(key, Some(digest))
    }

    /// Removes `key`, returning its digest. O(depth).
    pub fn remove(&mut self, key: KeyHash) -> Option<Digest> {
        self.set(key, None)
    }

    /// Changes `key` from `old` to `new` (`None` = absent), checking that the tree held `old`.
    /// O(depth): one node per level is touched, never a rebuild.
    ///
    /// # Errors
    ///
    /// [`MerkleError::StaleUpdate`] if the tree does not hold `old` for `key`; nothing changed.
    pub fn update(
        &mut self,
        key: KeyHash,
        old: Option<Digest>,
        new: Option<Digest>,
    ) -> Result<(), MerkleError> {
        let found = self.get(key);
        if found != old {
            return Err(MerkleError::StaleUpdate {
                key,
                expected: old,
                found,
            });
        }
        self.set(key, new);
        Ok(())
    }

    fn set(&mut self, key: KeyHash, new: Option<Digest>) -> Option<Digest> {
        let old = match new {
            Some(digest) => self.keys.insert(key, digest),
            None => self.keys.remove(&key),
        };
        if old == new {
            return old;
        }
        let add = |d: Option<Digest>| d.map_or(0, |d| contribution(key, d));
        // Addition mod 2^64 commutes, so the result does not depend on update order, and a
        // change is one subtraction plus one addition on each node on the key's path.
        let sum = add(new).wrapping_sub(add(old));
        let count = i64::from(new.is_some()) - i64::from(old.is_some());
        self.root.apply(sum, count);
        for (level, nodes) in (1..=self.shape.depth).zip(&mut self.levels) {
            match nodes.entry(self.shape.index_of(key, level)) {
                Entry::Occupied(mut entry) => {
                    entry.get_mut().apply(sum, count);
                    if entry.get().count == 0 {
                        entry.remove();
                        // Give memory back when a level empties out (everything deleted);
                        // the quarter/double gap keeps this amortised O(1).
                        if nodes.capacity() > 64 && nodes.len() <= nodes.capacity() / 4 {
                            nodes.shrink_to(nodes.len() * 2);
                        }
                    }
                }
                Entry::Vacant(entry) => {
                    let mut node = Node::default();
                    node.apply(sum, count);
                    entry.insert(node);
                }
            }
        }
        old
    }

    /// The root digest: equal on two replicas holding the same (key, digest) set.
    #[must_use]
    pub fn root(&self) -> Digest {
        Digest(self.root.sum)
    }

    /// The digest of the node at `path` ([`Digest::EMPTY`] if no key is below it).
    ///
    /// # Errors
    ///
    /// [`MerkleError::PathOutOfRange`] if `path` is not a node of this shape.
    pub fn node(&self, path: NodePath) -> Result<Digest, MerkleError> {
        Ok(Digest(self.lookup(path)?.map_or(0, |n| n.sum)))
    }

    /// Number of keys below the node at `path`. Lets a protocol send a small subtree's keys
    /// at once instead of descending further.
    ///
    /// # Errors
    ///
    /// [`MerkleError::PathOutOfRange`] if `path` is not a node of this shape.
    pub fn node_len(&self, path: NodePath) -> Result<u64, MerkleError> {
        Ok(self.lookup(path)?.map_or(0, |n| n.count))
    }

    fn lookup(&self, path: NodePath) -> Result<Option<&Node>, MerkleError> {
        self.shape.check(path)?;
        Ok(match usize::from(path.level).checked_sub(1) {
            None => Some(&self.root).filter(|n| n.count > 0),
            Some(l) => self.levels.get(l).and_then(|nodes| nodes.get(&path.index)),
        })
    }

    /// The non-empty children of the node at `path`, as (child index in `0..fan_out`,
    /// digest), in increasing index order. O(fan_out).
    ///
    /// # Errors
    ///
    /// [`MerkleError::PathOutOfRange`] if `path` is not a node of this shape;
    /// [`MerkleError::NoChildren`] if it is a leaf bucket (ask [`leaf_keys`](Self::leaf_keys)).
    pub fn children(&self, path: NodePath) -> Result<Vec<(u16, Digest)>, MerkleError> {
        let node = self.lookup(path)?;
        if path.level >= self.shape.depth {
            return Err(MerkleError::NoChildren { level: path.level });
        }
        // levels[level] holds the children's level (level + 1), which exists below depth.
        let (Some(_), Some(nodes)) = (node, self.levels.get(usize::from(path.level))) else {
            return Ok(Vec::new());
        };
        let first = path.index << self.shape.bits();
        Ok((0..self.shape.fan_out)
            .filter_map(|c| {
                nodes
                    .get(&(first | u64::from(c)))
                    .map(|n| (c, Digest(n.sum)))
            })
            .collect())
    }

    /// The keys below the node at `path` with their digests, in increasing key-hash order.
    /// Meant for leaf buckets, where the protocol switches to per-key information, but any
    /// node works (the root yields every key).
    ///
    /// # Errors
    ///
    /// [`MerkleError::PathOutOfRange`] if `path` is not a node of this shape.
    pub fn leaf_keys(
        &self,
        path: NodePath,
    ) -> Result<impl Iterator<Item = (KeyHash, Digest)> + '_, MerkleError> {
        self.shape.check(path)?;
        let (low, high) = self.shape.key_range(path);
        Ok(self.keys.range(low..=high).map(|(k, d)| (*k, *d)))
    }

    /// The child indices of the node at `path` where `theirs` (a peer's
    /// [`children`](Self::children) of the same node) differs from ours: a digest differs,
    /// or the child is non-empty on one side only. These are the subtrees to descend into.
    ///
    /// # Errors
    ///
    /// Those of [`children`](Self::children), and [`MerkleError::MalformedChildren`] if
    /// `theirs` has an index not below the fan-out or indices not strictly increasing.
    pub fn diff(&self, path: NodePath, theirs: &[(u16, Digest)]) -> Result<Vec<u16>, MerkleError> {
        let mut previous: Option<u16> = None;
        for &(index, _) in theirs {
            if index >= self.shape.fan_out || previous.is_some_and(|p| p >= index) {
                return Err(MerkleError::MalformedChildren {
                    index,
                    fan_out: self.shape.fan_out,
                });
            }
            previous = Some(index);
        }
        let ours = self.children(path)?;
        Ok(diff_sorted(&ours, theirs))
    }
}

/// Indices present in one sorted list only, or in both with different digests.
fn diff_sorted(ours: &[(u16, Digest)], theirs: &[(u16, Digest)]) -> Vec<u16> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < ours.len() || j < theirs.len() {
        match (ours.get(i), theirs.get(j)) {
            (Some(a), Some(b)) if a.0 == b.0 => {
                if a.1 != b.1 {
                    out.push(a.0);
                }
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a.0 < b.0 => {
                out.push(a.0);
                i += 1;
            }
            (Some(a), None) => {
                out.push(a.0);
                i += 1;
            }
            (_, Some(b)) => {
                out.push(b.0);
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}

impl Node {
    fn apply(&mut self, sum: u64, count: i64) {
        self.sum = self.sum.wrapping_add(sum);
        self.count = self.count.wrapping_add_signed(count);
    }
}

/// Node indices are already uniform hash bits; a multiply spreads them into the top bits
/// the table uses, at a fraction of SipHash's cost on the update path.
#[derive(Default)]
struct IndexHasher(u64);

type IndexHasherBuilder = BuildHasherDefault<IndexHasher>;

impl Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b) ^ self.0.rotate_left(8));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
