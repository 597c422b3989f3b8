//! Property tests of the tree: order independence, reversibility, exact descent, sparsity.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

fn small_shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::default()),
        Just(Shape {
            fan_out: 4,
            depth: 3
        }),
        Just(Shape {
            fan_out: 2,
            depth: 1
        }),
        Just(Shape {
            fan_out: 256,
            depth: 8
        }),
        Just(Shape {
            fan_out: 64,
            depth: 2
        }),
    ]
}

fn entries() -> impl Strategy<Value = BTreeMap<u64, u64>> {
    proptest::collection::btree_map(any::<u64>(), any::<u64>(), 0..200)
}

fn tree_of(shape: Shape, entries: impl IntoIterator<Item = (u64, u64)>) -> MerkleTree {
    let mut tree = MerkleTree::new(shape).expect("valid shape");
    for (k, d) in entries {
        tree.insert(KeyHash(k), Digest(d));
    }
    tree
}

/// The leaf buckets two trees should disagree on: those of keys whose digests differ.
fn expected_leaves(
    shape: Shape,
    a: &BTreeMap<u64, u64>,
    b: &BTreeMap<u64, u64>,
) -> BTreeSet<NodePath> {
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(k) != b.get(k))
        .map(|&k| NodePath {
            level: shape.depth,
            index: shape.index_of(KeyHash(k), shape.depth),
        })
        .collect()
}

proptest! {
    #[test]
    fn root_is_independent_of_update_order(
        shape in small_shape(),
        entries in entries(),
        noise in proptest::collection::vec((any::<u64>(), any::<u64>()), 0..50),
        seed in any::<u64>(),
    ) {
        let forward = tree_of(shape, entries.clone());
        // Another order, with transient keys and digests that are later undone.
        let mut order: Vec<_> = entries.iter().map(|(k, d)| (*k, *d)).collect();
        order.sort_by_key(|(k, _)| k.wrapping_mul(seed | 1).rotate_left(17));
        let mut other = tree_of(shape, noise.iter().copied());
        for (k, d) in order {
            other.insert(KeyHash(k), Digest(d));
        }
        for (k, _) in &noise {
            match entries.get(k) {
                Some(&d) => { other.insert(KeyHash(*k), Digest(d)); }
                None => { other.remove(KeyHash(*k)); }
            }
        }
        prop_assert_eq!(forward.root(), other.root());
        prop_assert_eq!(forward.len(), other.len());
        prop_assert_eq!(forward.node_count(), other.node_count());
        prop_assert_eq!(forward.children(NodePath::ROOT), other.children(NodePath::ROOT));
    }

    #[test]
    fn update_then_undo_restores_root(
        shape in small_shape(),
        entries in entries(),
        key in any::<u64>(),
        new in proptest::option::of(any::<u64>()),
    ) {
        let mut tree = tree_of(shape, entries);
        let (root, nodes) = (tree.root(), tree.node_count());
        let key = KeyHash(key);
        let old = tree.get(key);
        let new = new.map(Digest);
        tree.update(key, old, new).expect("old is current");
        tree.update(key, new, old).expect("new is current");
        prop_assert_eq!(tree.root(), root);
        prop_assert_eq!(tree.node_count(), nodes);
    }

    #[test]
    fn descent_finds_exactly_the_differing_buckets(
        shape in small_shape(),
        base in entries(),
        changes in proptest::collection::vec((any::<u64>(), proptest::option::of(any::<u64>())), 0..20),
        reuse in any::<bool>(),
    ) {
        let a = base.clone();
        let mut b = base.clone();
        for (i, (k, d)) in changes.into_iter().enumerate() {
            // Half the time change an existing key, so edits and removals are covered.
            let key = if reuse { base.keys().nth(i % base.len().max(1)).copied().unwrap_or(k) } else { k };
            match d {
                Some(d) => { b.insert(key, d); }
                None => { b.remove(&key); }
            }
        }
        let (ta, tb) = (tree_of(shape, a.clone()), tree_of(shape, b.clone()));
        let cmp = ta.compare(&tb).expect("same shape");
        let found: BTreeSet<_> = cmp.differing_leaves.iter().copied().collect();
        prop_assert_eq!(&found, &expected_leaves(shape, &a, &b));
        prop_assert_eq!(cmp.rounds == 0, a == b);
        // The keys of those buckets are where the differences are.
        for leaf in &cmp.differing_leaves {
            let ours: BTreeMap<_, _> = ta.leaf_keys(*leaf).expect("leaf").collect();
            let theirs: BTreeMap<_, _> = tb.leaf_keys(*leaf).expect("leaf").collect();
            prop_assert_ne!(ours, theirs);
        }
    }

    #[test]
    fn nodes_grow_with_keys_not_capacity(shape in small_shape(), entries in entries()) {
        let tree = tree_of(shape, entries.clone());
        prop_assert!(tree.node_count() <= entries.len() * usize::from(shape.depth));
        prop_assert_eq!(tree.leaf_keys(NodePath::ROOT).expect("root").count(), entries.len());
        prop_assert_eq!(tree.node_len(NodePath::ROOT), Ok(entries.len() as u64));
    }

    #[test]
    fn peer_input_never_panics(level in any::<u8>(), index in any::<u64>(),
                               theirs in proptest::collection::vec((any::<u16>(), any::<u64>()), 0..8)) {
        let tree = tree_of(Shape::default(), (0..50u64).map(|k| (k.wrapping_mul(0x9E37_79B9_7F4A_7C15), k)));
        let path = NodePath { level, index };
        let theirs: Vec<_> = theirs.into_iter().map(|(i, d)| (i, Digest(d))).collect();
        let _ = tree.node(path);
        let _ = tree.children(path);
        let _ = tree.leaf_keys(path).map(Iterator::count);
        let _ = tree.diff(path, &theirs);
        let _ = path.child(&tree.shape(), theirs.first().map_or(0, |t| t.0));
    }
}

#[test]
fn ten_keys_allocate_few_nodes() {
    let tree = tree_of(
        Shape {
            fan_out: 256,
            depth: 8,
        },
        (1..=10u64).map(|k| (k << 40, k)),
    );
    assert!(tree.node_count() <= 80);
    assert_eq!(tree.len(), 10);
}

#[test]
fn empty_tree_is_empty_everywhere() {
    let tree = MerkleTree::default();
    assert_eq!(tree.root(), Digest::EMPTY);
    assert_eq!(tree.children(NodePath::ROOT), Ok(Vec::new()));
    assert_eq!(tree.node_count(), 0);
    assert!(tree.is_empty());
    assert_eq!(
        tree.compare(&MerkleTree::default()).map(|c| c.rounds),
        Ok(0)
    );
}

#[test]
fn stale_update_is_refused_without_change() {
    let mut tree = tree_of(Shape::default(), [(1, 1)]);
    let root = tree.root();
    let err = tree.update(KeyHash(1), Some(Digest(2)), None);
    assert!(matches!(err, Err(MerkleError::StaleUpdate { .. })));
    assert_eq!(tree.root(), root);
    assert_eq!(tree.get(KeyHash(1)), Some(Digest(1)));
}

#[test]
fn malformed_children_from_a_peer_are_refused() {
    let tree = tree_of(Shape::default(), [(1, 1)]);
    let unsorted = [(3, Digest(1)), (2, Digest(1))];
    let too_big = [(16, Digest(1))];
    let dup = [(2, Digest(1)), (2, Digest(1))];
    for theirs in [&unsorted[..], &too_big, &dup] {
        assert!(matches!(
            tree.diff(NodePath::ROOT, theirs),
            Err(MerkleError::MalformedChildren { .. })
        ));
    }
}

#[test]
fn mismatched_shapes_are_not_compared() {
    let a = MerkleTree::default();
    let b = MerkleTree::new(Shape {
        fan_out: 4,
        depth: 3,
    })
    .expect("valid");
    assert_eq!(a.compare(&b), Err(MerkleError::ShapeMismatch));
}
