//! A repair leaves out writes of a third replica that are still streaming to the neighbour
//! from their writer, and repairs them once that stream stops.

use crate::clock::Timestamp;
use crate::crdt::Embeddable;
use crate::crdt::{AwLwwMap, CausalContext, ReplicaId};
use crate::sync::{SyncConfig, SyncState};

type Map = AwLwwMap<String, u32>;
type Replica = SyncState<Map, u8>;

const B: u8 = 1;
const C: u8 = 2;

fn id(of: u8) -> ReplicaId {
    ReplicaId::new(u64::from(of) + 1)
}

/// Replica `me` of a three-node full mesh (no relay).
fn replica(me: u8) -> Replica {
    let config = SyncConfig {
        relay: false,
        ..SyncConfig::default()
    };
    let mut s = SyncState::new(id(me), 7, Map::new(), config);
    s.set_neighbours([0u8, 1, 2].into_iter().filter(|&p| p != me));
    s
}

/// Writes `key` on `at` as replica `writer` would have (its `n`-th write): the same dot
/// everywhere it lands.
fn land(at: &mut Replica, writer: u8, key: &str, n: u32) {
    let ts = Timestamp::new(u64::from(n), 0);
    at.mutate(|m, _| m.put(id(writer), ts, key.to_owned(), n));
}

fn context(r: &Replica) -> CausalContext {
    r.crdt().as_causal().context().clone()
}

/// `a` handles `b`'s context as it is now; returns the keys `a` repaired. What `a` sends is
/// dropped, and the probe behind a repair is answered (else `a` would wait for the repair to
/// land before comparing again).
fn compare(a: &mut Replica, b: &Replica) -> u64 {
    let before = a.stats().repair_keys_sent;
    a.on_context(&B, id(B), b.root(), context(b));
    a.on_landed(&B, u64::MAX);
    while a.poll_transmit().is_some() {}
    a.stats().repair_keys_sent - before
}

#[test]
fn writes_still_streaming_from_a_third_replica_are_left_to_it_until_the_stream_stops() {
    let (mut a, mut b) = (replica(0), replica(B));
    // c's first write reached a only. The first context a sees from b has nothing to compare
    // with: everything b lacks is repaired.
    land(&mut a, C, "c1", 1);
    assert_eq!(compare(&mut a, &b), 1);

    // c's stream reaches b (c1), while a already holds c's next write: b's entry for c grew
    // since its last context, so a leaves c2 to c.
    land(&mut b, C, "c1", 1);
    land(&mut a, C, "c2", 2);
    assert_eq!(
        compare(&mut a, &b),
        0,
        "a repaired a write still streaming from c"
    );

    // a's own writes are never left out, streaming or not.
    a.mutate(|m, me| m.put(me, Timestamp::new(3, 0), "a1".to_owned(), 3));
    land(&mut b, C, "c2", 2);
    land(&mut a, C, "c3", 4);
    assert_eq!(compare(&mut a, &b), 1, "a's own write a1 was not repaired");

    // c's stream to b stops (c crashed, or cannot reach b): b's entry for c no longer grows,
    // and the next context repairs what b lacks of c.
    assert_eq!(
        compare(&mut a, &b),
        2,
        "a1 and c3 once c's entry stopped growing"
    );
}
