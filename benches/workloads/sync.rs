//! Sync workloads: two replicas holding the same 100,000 keys ("k<i>", 64-byte values); one
//! updates `d` keys; bytes on the wire (every encoded message, both directions) and rounds
//! (ticks) until both Merkle roots are equal. In-process, through the protocol, on a perfect
//! in-order network; the figures are deterministic.

use crate::report::Report;
use herd::clock::Hlc;
use herd::codec;
use herd::crdt::{AwLwwMap, Embeddable, ReplicaId};
use herd::sync::{SyncConfig, SyncState};

type Map = AwLwwMap<String, Vec<u8>>;
type Replica = SyncState<Map, u8>;

const KEYS: usize = 100_000;
const VALUE_LEN: usize = 64;
const UPDATES: [usize; 3] = [100, 1_000, 10_000];

fn key(i: usize) -> String {
    format!("k{i}")
}

/// The shared starting state, written by a third replica.
fn base(clock: &mut Hlc) -> Map {
    let mut map = Map::new();
    for i in 0..KEYS {
        map.put(
            ReplicaId::new(0xbeef),
            clock.now(i as u64),
            key(i),
            vec![1; VALUE_LEN],
        );
    }
    map
}

/// A converged pair. Replica ids are 64-bit, as herd draws them in production.
fn pair(map: &Map, config: &SyncConfig) -> (Replica, Replica) {
    pair_of(map, map, config, config)
}

/// A pair holding `ma` and `mb`, configured `ca` and `cb`, that have told each other their
/// limits (one round, not counted by `drive`).
fn pair_of(ma: &Map, mb: &Map, ca: &SyncConfig, cb: &SyncConfig) -> (Replica, Replica) {
    let mut a = SyncState::new(
        ReplicaId::new(0x9c3f_11a2_7d04_e6b1),
        1,
        ma.clone(),
        ca.clone(),
    );
    let mut b = SyncState::new(
        ReplicaId::new(0x51e8_c0d7_3a9b_2f46),
        2,
        mb.clone(),
        cb.clone(),
    );
    a.set_neighbours([1]);
    b.set_neighbours([0]);
    if ma == mb {
        drive(&mut a, &mut b, 10);
    }
    (a, b)
}

/// Ticks both and delivers everything in order until the roots are equal; returns (bytes on
/// the wire, rounds, largest message).
fn drive(a: &mut Replica, b: &mut Replica, max_rounds: u64) -> (u64, u64, usize) {
    let start = a.stats().bytes_sent + b.stats().bytes_sent;
    let mut largest = 0;
    for round in 1..=max_rounds {
        a.handle_tick();
        b.handle_tick();
        loop {
            let mut moved = false;
            while let Some(t) = a.poll_transmit() {
                largest = largest.max(t.bytes.len());
                let _ = b.handle_message(&0, &t.bytes);
                moved = true;
            }
            while let Some(t) = b.poll_transmit() {
                largest = largest.max(t.bytes.len());
                let _ = a.handle_message(&1, &t.bytes);
                moved = true;
            }
            if !moved {
                break;
            }
        }
        if a.root() == b.root() && a.buffered_deltas() == 0 {
            let bytes = a.stats().bytes_sent + b.stats().bytes_sent - start;
            return (bytes, round, largest);
        }
    }
    panic!("no convergence in {max_rounds} rounds");
}

/// The encoded size of the changed entries alone: each changed key with its entry (dot,
/// timestamp, value), as the codec writes them.
fn physical_limit(a: &Replica, updated: usize) -> f64 {
    let causal = a.crdt().as_causal();
    (0..updated)
        .map(|i| {
            let k = key(i * (KEYS / updated));
            let entry = causal.store().get(&k).expect("updated key");
            (codec::encoded_len(&(&k, entry)).expect("encodes") - 1) as f64
        })
        .sum()
}

fn update(a: &mut Replica, clock: &mut Hlc, updated: usize) {
    for i in 0..updated {
        let k = key(i * (KEYS / updated));
        let ts = clock.now(KEYS as u64 + i as u64);
        a.mutate(|m, id| m.put(id, ts, k, vec![2; VALUE_LEN]));
    }
}

/// Delta path: the update travels as buffered deltas.
pub(crate) fn sync_delta(r: &mut Report) {
    let mut clock = Hlc::default();
    let map = base(&mut clock);
    for d in UPDATES {
        let (mut a, mut b) = pair(&map, &SyncConfig::default());
        update(&mut a, &mut clock, d);
        let limit = physical_limit(&a, d);
        let (bytes, rounds, largest) = drive(&mut a, &mut b, 100);
        r.record(
            &format!("delta_path_bytes_d{d}"),
            bytes as f64,
            "bytes",
            Some(limit),
        );
        r.record(
            &format!("delta_path_rounds_d{d}"),
            rounds as f64,
            "ticks",
            None,
        );
        r.record(
            &format!("delta_path_largest_message_d{d}"),
            largest as f64,
            "bytes",
            Some(SyncConfig::default().max_sync_size as f64),
        );
    }
}

/// Repair path: the same divergence, reached while partitioned with the delta buffers gone.
pub(crate) fn sync_repair(r: &mut Report) {
    let mut clock = Hlc::default();
    let map = base(&mut clock);
    let config = SyncConfig {
        max_buffered_deltas: 0,
        ..SyncConfig::default()
    };
    for d in UPDATES {
        let (mut a, mut b) = pair(&map, &config);
        update(&mut a, &mut clock, d);
        let limit = physical_limit(&a, d);
        // The goal's allowance: 2x the limit plus 32 bytes per differing key per tree level.
        let allowance = 2.0 * limit + 32.0 * d as f64 * (KEYS as f64).log(16.0);
        let (bytes, rounds, largest) = drive(&mut a, &mut b, 100);
        r.record(
            &format!("repair_path_bytes_d{d}"),
            bytes as f64,
            "bytes",
            Some(limit),
        );
        r.record(
            &format!("repair_path_bytes_vs_allowance_d{d}"),
            bytes as f64,
            "bytes",
            Some(allowance),
        );
        r.record(
            &format!("repair_path_rounds_d{d}"),
            rounds as f64,
            "ticks",
            None,
        );
        r.record(
            &format!("repair_path_largest_message_d{d}"),
            largest as f64,
            "bytes",
            Some(config.max_sync_size as f64),
        );
    }
    // Removes missed while partitioned (no write carries them): found by the Merkle descent.
    let (mut a, mut b) = pair(&map, &config);
    let removed = 100;
    for i in 0..removed {
        let k = key(i * (KEYS / removed));
        a.mutate(|m, _| m.remove(&k));
    }
    let (bytes, rounds, _) = drive(&mut a, &mut b, 100);
    r.record(
        "repair_path_bytes_removes_d100",
        bytes as f64,
        "bytes",
        None,
    );
    r.record(
        "repair_path_rounds_removes_d100",
        rounds as f64,
        "ticks",
        None,
    );
}

/// A converged, idle pair, and the naive baseline: shipping the full state.
pub(crate) fn sync_idle(r: &mut Report) {
    let mut clock = Hlc::default();
    let map = base(&mut clock);
    let (mut a, mut b) = pair(&map, &SyncConfig::default());
    drive(&mut a, &mut b, 10);
    let before = a.stats().bytes_sent + b.stats().bytes_sent;
    const TICKS: u64 = 100;
    for _ in 0..TICKS {
        a.handle_tick();
        b.handle_tick();
        while let Some(t) = a.poll_transmit() {
            let _ = b.handle_message(&0, &t.bytes);
        }
        while let Some(t) = b.poll_transmit() {
            let _ = a.handle_message(&1, &t.bytes);
        }
    }
    let per = (a.stats().bytes_sent + b.stats().bytes_sent - before) as f64 / TICKS as f64 / 2.0;
    r.record(
        "idle_bytes_per_tick_per_direction",
        per,
        "bytes",
        Some(64.0),
    );
    let full = codec::encoded_len(&map).expect("encodes") as f64;
    r.record("naive_full_state_bytes", full, "bytes", None);
}

/// Limits: neighbours with different `max_sync_size` (bytes against both at the default), a
/// small limit moving 100,000 keys to an empty peer (ticks), and a value as large as the limit
/// allows reaching an empty peer when the context names 64 replica ids.
pub(crate) fn sync_limits(r: &mut Report) {
    let mut clock = Hlc::default();
    let map = base(&mut clock);
    let large = SyncConfig::default();
    let small = SyncConfig {
        max_sync_size: 2_000,
        ..SyncConfig::default()
    };
    let no_buffer = |c: &SyncConfig| SyncConfig {
        max_buffered_deltas: 0,
        ..c.clone()
    };
    for (path, repair) in [("delta", false), ("repair", true)] {
        let run = |ca: &SyncConfig, cb: &SyncConfig, clock: &mut Hlc| {
            let (ca, cb) = if repair {
                (no_buffer(ca), no_buffer(cb))
            } else {
                (ca.clone(), cb.clone())
            };
            let (mut a, mut b) = pair_of(&map, &map, &ca, &cb);
            update(&mut a, clock, 1_000);
            drive(&mut a, &mut b, 1_000).0 as f64
        };
        let same = run(&large, &large, &mut clock);
        let small_sender = run(&small, &large, &mut clock);
        let small_receiver = run(&large, &small, &mut clock);
        r.record(
            &format!("{path}_d1000_bytes_both_1mib"),
            same,
            "bytes",
            None,
        );
        r.record(
            &format!("{path}_d1000_bytes_sender_2k_receiver_1mib"),
            small_sender,
            "bytes",
            Some(same),
        );
        r.record(
            &format!("{path}_d1000_bytes_sender_1mib_receiver_2k"),
            small_receiver,
            "bytes",
            Some(same),
        );
    }

    // 100,000 keys to an empty peer with 16 KB messages: the repair path, windowed.
    let config = SyncConfig {
        max_sync_size: 16_384,
        ..SyncConfig::default()
    };
    let (mut a, mut b) = pair_of(&map, &Map::new(), &config, &config);
    let (bytes, rounds, largest) = drive(&mut a, &mut b, 10_000);
    r.record(
        "empty_peer_100000_keys_16k_rounds",
        rounds as f64,
        "ticks",
        None,
    );
    r.record(
        "empty_peer_100000_keys_16k_bytes",
        bytes as f64,
        "bytes",
        Some(codec::encoded_len(&map).expect("encodes") as f64),
    );
    r.record(
        "empty_peer_100000_keys_16k_largest_message",
        largest as f64,
        "bytes",
        Some(16_384.0),
    );

    // 64 replica ids in the context, then one value as large as an entry may be.
    let mut history = map.clone();
    for id in 0..64u64 {
        let _ = history.put(
            ReplicaId::new(0x1000 + id),
            clock.now(2 * KEYS as u64),
            format!("id/{id}"),
            vec![0; 8],
        );
    }
    let max = SyncConfig::default().max_sync_size;
    // A holds it all and writes the value; B joins empty.
    let (mut a, mut b) = pair_of(&history, &Map::new(), &large, &large);
    let entry = large.max_entry_size();
    let ts = clock.now(3 * KEYS as u64);
    a.mutate(|m, id| m.put(id, ts, "big".to_owned(), vec![7; entry - 64]));
    let (bytes, rounds, largest) = drive(&mut a, &mut b, 1_000);
    assert_eq!(b.crdt().len(), a.crdt().len());
    r.record(
        "max_value_64_ids_late_joiner_rounds",
        rounds as f64,
        "ticks",
        None,
    );
    r.record(
        "max_value_64_ids_late_joiner_bytes",
        bytes as f64,
        "bytes",
        None,
    );
    r.record(
        "max_value_64_ids_largest_message",
        largest as f64,
        "bytes",
        Some(max as f64),
    );
}
