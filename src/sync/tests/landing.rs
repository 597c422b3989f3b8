//! Repairs are self-clocked: the next burst to a neighbour leaves when the probe sent behind
//! the last one is answered, never on a context from before it.

use crate::clock::Timestamp;
use crate::crdt::{AwLwwMap, Embeddable, ReplicaId};
use crate::sync::MapCrdt;
use crate::sync::message::Message;
use crate::sync::state::MAX_LANDING_PROBES;
use crate::sync::{SyncConfig, SyncState};

type Map = AwLwwMap<String, u32>;
type Replica = SyncState<Map, u8>;

const A: u8 = 0;
const B: u8 = 1;

/// `a` holding `keys` keys, and an empty `b`, neighbours of each other.
fn pair(keys: u32) -> (Replica, Replica) {
    let mut a = SyncState::new(ReplicaId::new(1), 1, Map::new(), SyncConfig::default());
    for i in 0..keys {
        a.mutate(|m, me| m.put(me, Timestamp::new(u64::from(i) + 1, 0), format!("k{i}"), i));
    }
    let mut b = SyncState::new(ReplicaId::new(2), 2, Map::new(), SyncConfig::default());
    a.set_neighbours([B]);
    b.set_neighbours([A]);
    // Limits known both ways, so that nothing waits on a Hello.
    carry(&mut a, A, &mut b);
    carry(&mut b, B, &mut a);
    carry(&mut a, A, &mut b);
    (a, b)
}

/// Delivers everything `from` has queued to `to`.
fn carry(from: &mut Replica, name: u8, to: &mut Replica) {
    while let Some(t) = from.poll_transmit() {
        to.handle_message(&name, &t.bytes).expect("accepted");
    }
}

fn drop_all(r: &mut Replica) {
    while r.poll_transmit().is_some() {}
}

fn context(r: &Replica) -> crate::crdt::CausalContext {
    r.crdt().as_causal().context().clone()
}

#[test]
fn contexts_from_before_a_repair_do_not_send_it_again() {
    let (mut a, mut b) = pair(20);
    let empty = context(&b);
    a.on_context(&B, ReplicaId::new(2), b.root(), empty.clone());
    assert_eq!(a.stats().repair_keys_sent, 20);
    let burst: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
    // Answers to digests b received before the burst (b was busy applying it): each shows
    // b still empty, and none sends the burst again.
    for _ in 0..5 {
        a.on_context(&B, ReplicaId::new(2), b.root(), empty.clone());
    }
    assert_eq!(
        a.stats().repair_keys_sent,
        20,
        "a stale context resent the repair"
    );
    // No digest either while the repair lands.
    a.handle_tick();
    assert!(
        a.poll_transmit().is_none(),
        "a digest went out while a repair was landing"
    );
    // The burst lands, and the probe behind it is answered after it.
    for t in burst {
        b.handle_message(&A, &t.bytes).expect("accepted");
    }
    assert_eq!(b.crdt().len(), 20);
    carry(&mut b, B, &mut a);
    // The answer starts the next comparison at once: a digest, which finds them equal.
    carry(&mut a, A, &mut b);
    assert!(b.poll_transmit().is_none(), "b answered an equal digest");
    assert_eq!(a.stats().repair_keys_sent, 20);
}

#[test]
fn a_lost_repair_is_sent_again_once_the_probe_behind_it_is_answered() {
    let (mut a, mut b) = pair(20);
    a.on_context(&B, ReplicaId::new(2), b.root(), context(&b));
    drop_all(&mut a); // the burst and its probe are lost
    // a probes again when the answer is late; this probe gets through, and its answer shows
    // b empty: the comparison that follows repairs again.
    let mut ticks = 0;
    while b.crdt().len() < 20 {
        ticks += 1;
        assert!(ticks < 100, "b not repaired after {ticks} ticks");
        a.handle_tick();
        b.handle_tick();
        carry(&mut a, A, &mut b);
        carry(&mut b, B, &mut a);
    }
    assert_eq!(
        a.stats().repair_keys_sent,
        40,
        "sent once, lost, sent once more"
    );
}

/// What `r` has queued, by kind, dropping it.
fn sent_kinds(r: &mut Replica) -> Vec<&'static str> {
    std::iter::from_fn(|| r.poll_transmit())
        .map(|t| {
            let msg: Message<String, <Map as MapCrdt>::Value> =
                crate::codec::decode(&t.bytes, 1 << 20).expect("decodes");
            match msg {
                Message::Probe { .. } => "probe",
                Message::Digest { .. } => "digest",
                _ => "other",
            }
        })
        .collect()
}

#[test]
fn a_neighbour_that_never_answers_is_compared_again_with_digests() {
    let (mut a, b) = pair(5);
    a.on_context(&B, ReplicaId::new(2), b.root(), context(&b));
    drop_all(&mut a);
    let mut probes = 0;
    for _ in 0..1_000 {
        a.handle_tick();
        let kinds = sent_kinds(&mut a);
        if kinds.contains(&"digest") {
            assert_eq!(
                probes, MAX_LANDING_PROBES,
                "digests resumed before a gave up on the answer"
            );
            return;
        }
        probes += kinds.iter().filter(|k| **k == "probe").count() as u32;
    }
    panic!("a never gave up waiting for an answer ({probes} probes)");
}
