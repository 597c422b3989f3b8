//! The resend timeout follows the neighbour's round trip: a receiver that acknowledges late,
//! every time, is not sent the same window again and again.

use crate::clock::Timestamp;
use crate::crdt::{AwLwwMap, ReplicaId};
use crate::sync::state::RoundTrip;
use crate::sync::{SyncConfig, SyncState};
use std::collections::VecDeque;

type Map = AwLwwMap<String, u32>;

#[test]
fn the_timeout_settles_just_above_a_steady_round_trip() {
    let mut rt = RoundTrip::default();
    assert_eq!(rt.timeout(3), 3, "before any sample: the configured floor");
    for _ in 0..50 {
        rt.sample(10);
    }
    assert_eq!(
        rt.timeout(3),
        11,
        "a steady 10 ticks: srtt plus the least deviation"
    );
    assert_eq!(rt.timeout(20), 20, "never under the floor");
    // A round trip that jumps widens the timeout beyond the new mean at once.
    rt.sample(30);
    assert!(rt.timeout(3) > 30, "{}", rt.timeout(3));
}

/// `a` writes a stream of keys to `b`; what `b` sends back (its acknowledgements) arrives
/// `delay` ticks late. Returns `a`'s resends, after checking `b` got every write.
fn resends_with_late_acks(delay: u64) -> u64 {
    let config = SyncConfig {
        relay: false,
        ..SyncConfig::default()
    };
    let mut a: SyncState<Map, u8> =
        SyncState::new(ReplicaId::new(1), 1, Map::new(), config.clone());
    let mut b: SyncState<Map, u8> = SyncState::new(ReplicaId::new(2), 2, Map::new(), config);
    a.set_neighbours([1u8]);
    b.set_neighbours([0u8]);
    let mut late: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
    let (writing, ticks) = (200u64, 400u64);
    for tick in 0..ticks {
        if tick < writing {
            for i in 0..20 {
                let n = (tick * 20 + i) as u32;
                a.mutate(|m, id| {
                    m.put(id, Timestamp::new(u64::from(n) + 1, 0), format!("k{n}"), n)
                });
            }
        }
        a.handle_tick();
        b.handle_tick();
        while let Some(t) = a.poll_transmit() {
            b.handle_message(&0, &t.bytes).expect("a's message");
        }
        while let Some(t) = b.poll_transmit() {
            late.push_back((tick + delay, t.bytes));
        }
        while late.front().is_some_and(|(at, _)| *at <= tick) {
            if let Some((_, bytes)) = late.pop_front() {
                a.handle_message(&1, &bytes).expect("b's message");
            }
        }
    }
    assert_eq!(b.crdt().len(), (writing * 20) as usize, "b lacks writes");
    assert_eq!(a.root(), b.root());
    a.stats().delta_resends
}

#[test]
fn a_receiver_that_acknowledges_late_every_time_is_not_sent_the_window_again() {
    // Acknowledgements 10 ticks late, steadily: past the first timeout (3 ticks, before any
    // sample), the wait follows the round trip. A fixed 3-tick timeout resent 24 times here.
    let resends = resends_with_late_acks(10);
    assert!(
        resends <= 2,
        "{resends} resends to a slow, not lost, receiver"
    );
    // On time, nothing is resent.
    assert_eq!(resends_with_late_acks(0), 0);
}
