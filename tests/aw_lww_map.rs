//! `AwLwwMap` against simple models: a `HashMap` for a single replica, add-wins for concurrent
//! remove/put, and the memory residue after removing everything.

use herd::clock::{Hlc, Timestamp};
use herd::crdt::{AwLwwMap, Crdt, ReplicaId};
use proptest::prelude::*;
use std::collections::HashMap;

#[derive(Debug, Clone)]
enum Op {
    Put(u16, u32),
    Remove(u16),
    Get(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..32u16, any::<u32>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0..32u16).prop_map(Op::Remove),
        2 => (0..32u16).prop_map(Op::Get),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// One replica alone behaves exactly like a `HashMap`, and its deltas rebuild it.
    #[test]
    fn single_replica_is_a_hash_map(ops in proptest::collection::vec(op(), 0..200)) {
        let id = ReplicaId::new(7);
        let mut clock = Hlc::default();
        let mut map = AwLwwMap::new();
        let mut model = HashMap::new();
        let mut rebuilt = AwLwwMap::new();
        for (wall, op) in ops.into_iter().enumerate() {
            match op {
                Op::Put(k, v) => {
                    let d = map.put(id, clock.now(wall as u64), k, v);
                    rebuilt.join(&d);
                    model.insert(k, v);
                }
                Op::Remove(k) => {
                    let d = map.remove(&k);
                    rebuilt.join(&d);
                    model.remove(&k);
                }
                Op::Get(k) => prop_assert_eq!(map.get(&k), model.get(&k)),
            }
            prop_assert_eq!(map.len(), model.len());
        }
        let entries: HashMap<u16, u32> = map.iter().map(|(k, v)| (*k, *v)).collect();
        prop_assert_eq!(&entries, &model);
        prop_assert_eq!(&rebuilt, &map);
    }

    /// Concurrent writes to one key: every replica picks the greatest (timestamp, replica).
    #[test]
    fn last_writer_wins_the_same_everywhere(
        writes in proptest::collection::vec((0u64..4, 0u64..5, any::<u8>()), 1..12)
    ) {
        let mut replicas = vec![AwLwwMap::new(); 4];
        let mut clocks = vec![Hlc::default(); 4];
        let mut deltas = Vec::new();
        let mut stamped = Vec::new();
        for &(r, wall, v) in &writes {
            // Each replica stamps with its own clock; equal wall times across replicas are
            // common, so ties are decided by the replica id.
            let ts = clocks[r as usize].now(wall);
            stamped.push(((ts, r), v));
            deltas.push(replicas[r as usize].put(ReplicaId::new(r), ts, "k", v));
        }
        let winner = stamped.iter().max_by_key(|(rank, _)| *rank).map(|&(_, v)| v);
        for replica in &mut replicas {
            for d in deltas.iter().rev() {
                replica.join(d);
            }
            prop_assert_eq!(replica.get("k").copied(), winner);
        }
    }
}

#[test]
fn a_remove_concurrent_with_a_put_keeps_the_put() {
    let (a_id, b_id) = (ReplicaId::new(1), ReplicaId::new(2));
    let mut a = AwLwwMap::new();
    let seed = a.put(a_id, Timestamp::new(1, 0), "k", 1);
    let mut b = AwLwwMap::new();
    b.join(&seed);
    // a removes what it saw; b, not having seen the remove, writes an *older* timestamp.
    let removed = a.remove("k");
    let written = b.put(b_id, Timestamp::new(0, 5), "k", 2);
    for (x, d) in [(&mut a, &written), (&mut b, &removed)] {
        x.join(d);
    }
    assert_eq!(a, b);
    assert_eq!(a.get("k"), Some(&2), "add wins regardless of timestamps");
    // A remove that has seen the write does remove it.
    let removed_again = a.remove("k");
    b.join(&removed_again);
    assert_eq!(b.get("k"), None);
}

#[test]
fn removing_everything_leaves_a_plain_version_vector() {
    const N: u32 = 100_000;
    let a_id = ReplicaId::new(1);
    let mut clock = Hlc::default();
    let mut a = AwLwwMap::new();
    let mut b = AwLwwMap::new();
    for i in 0..N {
        let d = a.put(
            a_id,
            clock.now(u64::from(i)),
            format!("k{i}"),
            vec![0u8; 64],
        );
        b.join(&d);
    }
    // Half the removes happen on b, so both replicas issue and receive.
    for i in 0..N {
        let key = format!("k{i}");
        let d = if i % 2 == 0 {
            a.remove(&key)
        } else {
            b.remove(&key)
        };
        a.join(&d);
        b.join(&d);
    }
    for m in [&a, &b] {
        assert!(m.is_empty());
        assert!(m.context().is_version_vector(), "no dot cloud left");
        assert_eq!(m.context().vector(), &[(a_id, u64::from(N))]);
        // O(replicas), not O(keys): the whole state encodes in a few bytes.
        let bytes = herd::codec::encode(m, 1 << 20).expect("encodes");
        assert!(bytes.len() < 32, "state is {} bytes", bytes.len());
    }
    assert_eq!(a, b);
}
