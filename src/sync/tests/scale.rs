//! The protocol with many replicas in one full mesh: a write reaches every replica in a few
//! ticks, an idle replica's traffic does not grow with the number of neighbours, and the
//! invariants of the faulty schedules hold at that size.

use super::sim::{Faults, Sim};
use crate::sync::SyncConfig;

/// Replicas whose neighbours are every other replica, as when they follow cluster
/// membership: no relay.
fn mesh(seed: u64, n: usize) -> Sim {
    let config = SyncConfig {
        relay: false,
        ..SyncConfig::default()
    };
    Sim::new(seed, n, config)
}

/// Ticks until every replica of `sim` holds `key`.
fn ticks_until_everywhere(sim: &mut Sim, key: u32, limit: u64) -> Option<u64> {
    let start = sim.now;
    while sim.now - start < limit {
        let everywhere = sim.nodes.iter().all(|n| {
            n.sync
                .as_ref()
                .is_some_and(|s| s.crdt().get(&key).is_some())
        });
        if everywhere {
            return Some(sim.now - start);
        }
        sim.step();
    }
    None
}

/// Converges `sim`, then idles it until every replica's digest interval is at its longest;
/// returns the bytes sent per replica per tick over `ticks` more.
fn idle_bytes_per_replica_per_tick(sim: &mut Sim, ticks: u64) -> f64 {
    assert!(sim.settle(1_000).is_some(), "no convergence");
    // 1 + 2 + 4 + ... + 64 ticks of doubling rounds reach the longest interval.
    for _ in 0..130 {
        sim.step();
    }
    let before = sim.bytes_sent;
    for _ in 0..ticks {
        sim.step();
    }
    (sim.bytes_sent - before) as f64 / (ticks as f64 * sim.nodes.len() as f64)
}

fn log2(n: usize) -> u64 {
    u64::from(usize::BITS - n.leading_zeros())
}

#[test]
fn one_write_reaches_a_hundred_replicas_within_two_log2_n_ticks() {
    let n = 100;
    let mut sim = mesh(1, n);
    sim.settle(1_000).expect("an empty mesh settles");
    for round in 0..3u32 {
        // Idle first: the digest interval is at its longest when the write comes.
        for _ in 0..130 {
            sim.step();
        }
        let writer = (round as usize * 37) % n;
        sim.put(writer, round, vec![round as u8; 64]);
        let ticks = ticks_until_everywhere(&mut sim, round, 1_000).expect("write spread");
        eprintln!("write {round}: everywhere after {ticks} ticks");
        assert!(
            ticks <= 2 * log2(n),
            "write {round} took {ticks} ticks to reach {n} replicas"
        );
    }
}

#[test]
fn an_idle_replica_sends_the_same_bytes_with_ten_or_a_hundred_neighbours() {
    let small = idle_bytes_per_replica_per_tick(&mut mesh(2, 10), 640);
    let large = idle_bytes_per_replica_per_tick(&mut mesh(3, 100), 640);
    eprintln!("idle bytes per replica per tick: {small:.2} (10 replicas), {large:.2} (100)");
    assert!(small > 0.0, "idle replicas compare nothing");
    let ratio = large / small;
    assert!(
        (0.7..=1.3).contains(&ratio),
        "idle bytes per replica per tick: {small:.2} with 10 replicas, {large:.2} with 100"
    );
    // A digest is about 20 bytes: a few digests per 64 ticks, not one per neighbour per tick.
    assert!(large < 1.5, "{large:.2} bytes per replica per tick");
}

#[test]
fn fifty_replicas_converge_without_losing_writes_through_drops_partitions_and_crashes() {
    let n = 50;
    let mut sim = mesh(4, n);
    sim.faults = Faults {
        drop: 0.2,
        duplicate: 0.05,
        max_delay: 2,
    };
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = |m: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % m
    };
    for step in 0..300u32 {
        let i = next(n as u64) as usize;
        match next(100) {
            0..40 => sim.put(i, next(200) as u32, vec![step as u8; 16]),
            40..50 => sim.remove(i, next(200) as u32),
            50..53 => sim.partition(i, next(n as u64) as usize),
            53..55 => sim.heal(),
            55..57 => sim.crash(i, next(2) == 0),
            57..60 => sim.restart(i),
            _ => sim.step(),
        }
    }
    sim.settle(3_000)
        .expect("converges once the network is quiet");
    sim.check_final_state()
        .expect("exactly the accepted writes");
}

/// The same at a thousand replicas: `cargo test --release thousand -- --ignored`.
#[test]
#[ignore]
fn a_thousand_replicas_spread_a_write_in_two_log2_n_ticks_and_idle_at_constant_cost() {
    let n = 1_000;
    let mut sim = mesh(5, n);
    let idle = idle_bytes_per_replica_per_tick(&mut sim, 320);
    let small = idle_bytes_per_replica_per_tick(&mut mesh(6, 10), 320);
    sim.put(0, 7, vec![7; 64]);
    let ticks = ticks_until_everywhere(&mut sim, 7, 1_000).expect("write spread");
    eprintln!(
        "{n} replicas: write everywhere after {ticks} ticks; idle {idle:.2} B/replica/tick (10 replicas: {small:.2})"
    );
    assert!(ticks <= 2 * log2(n));
    assert!((0.7..=1.3).contains(&(idle / small)));
}

#[test]
fn an_idle_replica_has_nothing_due_for_many_ticks_and_a_write_is_due_at_the_next() {
    let mut sim = mesh(7, 4);
    sim.settle(1_000).expect("an empty mesh settles");
    for _ in 0..130 {
        sim.step();
    }
    // Right after a round, the next is a whole (longest) interval away.
    let mut idle = 0;
    for _ in 0..64 {
        sim.step();
        idle = idle.max(sim.nodes[0].sync.as_ref().expect("up").ticks_until_due());
    }
    assert_eq!(
        idle, 64,
        "an idle replica is due again in {idle} ticks at most"
    );
    sim.put(0, 1, vec![1]);
    let busy = sim.nodes[0].sync.as_ref().expect("up").ticks_until_due();
    assert_eq!(busy, 1, "a write waits for the next tick");
}
