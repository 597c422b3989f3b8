//! Message limits and flow control: neighbours with different `max_sync_size`, entries at
//! the limit, contexts naming many replica ids, and throughput that does not depend on the
//! limit (issue 10's three defects, each a test here and a multi-process test in
//! `tests/sync_limits.rs`).

use super::schedules::history;
use super::sim::{Faults, Map, Sim};
use crate::sync::SyncConfig;
use crate::sync::config::max_entry_size;

fn limit(max_sync_size: usize) -> SyncConfig {
    SyncConfig {
        max_sync_size,
        ..SyncConfig::default()
    }
}

fn stats(sim: &Sim, i: usize) -> crate::sync::SyncStats {
    sim.nodes[i]
        .sync
        .as_ref()
        .map(|s| s.stats().clone())
        .unwrap_or_default()
}

fn len(sim: &Sim, i: usize) -> usize {
    sim.nodes[i].sync.as_ref().map_or(0, |s| s.crdt().len())
}

/// Defect 1: node 0 takes 2,000-byte messages, node 1 the 1 MiB default. Node 1's writes
/// used to be refused forever while it resent them every tick.
#[test]
fn neighbours_with_different_limits_converge() {
    for (small, large) in [(0, 1), (1, 0)] {
        let mut configs = vec![limit(1 << 20); 2];
        configs[small] = limit(2_000);
        let mut sim = Sim::with_configs(1, configs, &Map::new());
        for key in 0..2_000 {
            sim.put(large, key, vec![9; 16]);
        }
        sim.settle(500).expect("converges");
        sim.check_final_state().expect("nothing lost");
        assert_eq!(len(&sim, small), 2_000);
        // At most the first messages, sent before the small side said its limit, are refused.
        assert!(
            sim.refused_for_size <= 2,
            "{} refused",
            sim.refused_for_size
        );
        assert_eq!(stats(&sim, small).rejected_messages, sim.refused_for_size);
    }
}

/// After convergence the pair is idle: nothing is resent in a loop.
#[test]
fn mixed_limits_settle_to_digests() {
    let mut sim = Sim::with_configs(2, vec![limit(2_000), limit(1 << 20)], &Map::new());
    for key in 0..500 {
        sim.put(1, key, vec![3; 32]);
    }
    sim.settle(500).expect("converges");
    let before = sim.bytes_sent;
    for _ in 0..100 {
        sim.step();
    }
    let per_tick = (sim.bytes_sent - before) as f64 / 100.0;
    assert!(per_tick <= 2.0 * 64.0, "idle: {per_tick} bytes per tick");
}

/// An entry too large for a neighbour's limit is reported on both sides, once, and not
/// resent: the sender never puts it on the wire.
#[test]
fn an_entry_too_large_for_a_neighbour_is_reported_once_not_resent() {
    let mut sim = Sim::with_configs(3, vec![limit(2_000), limit(1 << 20)], &Map::new());
    sim.faults = Faults::NONE;
    sim.put(1, 1, vec![5; 10_000]);
    sim.put(1, 2, vec![6; 16]);
    for _ in 0..50 {
        sim.step();
    }
    let before = sim.bytes_sent;
    for _ in 0..100 {
        sim.step();
    }
    assert_eq!(stats(&sim, 1).entries_too_large_for_peer, 1);
    assert_eq!(stats(&sim, 0).entries_too_large_here, 1);
    // The small key arrived; the large one did not, and is not being resent.
    assert_eq!(len(&sim, 0), 1);
    assert!(sim.largest_message <= 1 << 20);
    let per_tick = (sim.bytes_sent - before) as f64 / 100.0;
    assert!(
        per_tick < 2_000.0,
        "{per_tick} bytes per tick: the large entry is being resent"
    );
    let warnings: Vec<_> =
        std::iter::from_fn(|| sim.nodes[1].sync.as_mut().and_then(|s| s.poll_warning())).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}

/// Defect 2: a value as large as `put` allows, with 64 replica ids in every context, reaches
/// a replica that joins later (a wiped replica comes back with a fresh id and no state).
#[test]
fn near_limit_values_reach_a_late_joiner() {
    for max in [2_000, 16_000, 1 << 20] {
        let mut sim = Sim::with_configs(4, vec![limit(max); 2], &history(64));
        sim.faults = Faults::NONE;
        // The largest value whose entry (key, dot, timestamp, value) fits max_entry_size.
        let value_len = max_entry_size(max) - 40;
        sim.put(0, 7, vec![1; value_len]);
        sim.put(0, 8, vec![2; 8]);
        sim.crash(1, false);
        sim.restart(1);
        sim.settle(500)
            .unwrap_or_else(|| panic!("converges at max_sync_size {max}"));
        sim.check_final_state().expect("nothing lost");
        assert_eq!(stats(&sim, 0).entries_too_large_for_peer, 0);
        assert!(sim.largest_message <= max);
    }
}

/// Defect 3: with 4 KB messages, 2,000 keys used to take one message per tick (over 40
/// ticks). The window sends as many as the acknowledgements allow.
#[test]
fn a_small_limit_does_not_cap_throughput() {
    for late_joiner in [false, true] {
        let config = SyncConfig {
            max_sync_size: 4_000,
            ..SyncConfig::default()
        };
        let mut sim = Sim::new(5, 2, config);
        sim.faults = Faults::NONE;
        if late_joiner {
            sim.crash(1, false);
        }
        for key in 0..2_000 {
            sim.put(0, key, vec![4; 64]);
        }
        let ticks = sim.settle(500).expect("converges");
        sim.check_final_state().expect("nothing lost");
        assert!(
            ticks <= 8,
            "{ticks} ticks to move 2,000 keys (late joiner: {late_joiner})"
        );
        assert!(sim.largest_message <= 4_000);
    }
}
