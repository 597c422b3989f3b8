//! `AwLwwMap` against `std::collections::HashMap` on the same keys ("k<i>") and 64-byte values.
//!
//! Groups `put`, `get`, `join_delta` and `delta` at 1k, 100k and 1M keys; `HashMap` insert/get
//! sit in the same groups as the baseline. Before the groups run, a counting allocator measures
//! bytes per entry at 1M keys and prints them.
//!
//! `cargo bench --bench crdt` (all), `cargo bench --bench crdt -- put/100000` (one).

use criterion::{BatchSize, BenchmarkId, Criterion};
use herd::clock::Hlc;
use herd::crdt::{AwLwwMap, Crdt, ReplicaId};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Counts live heap bytes, to report memory per entry.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only adds bookkeeping.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];
const A: ReplicaId = ReplicaId::new(1);
const B: ReplicaId = ReplicaId::new(2);

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("k{i}")).collect()
}

fn value() -> Vec<u8> {
    vec![7u8; 64]
}

fn filled(keys: &[String], clock: &mut Hlc) -> AwLwwMap<String, Vec<u8>> {
    let mut map = AwLwwMap::new();
    for (i, k) in keys.iter().enumerate() {
        map.put(A, clock.now(i as u64), k.clone(), value());
    }
    map
}

/// Prints heap bytes per entry at 1M keys, and the overhead beyond the key and the value
/// themselves (their inline size plus their heap bytes).
fn report_memory() {
    let n = 1_000_000;
    let keys = keys(n);
    let payload: usize = keys.iter().map(|k| k.capacity()).sum::<usize>() + n * 64;
    let inline = std::mem::size_of::<String>() + std::mem::size_of::<Vec<u8>>();
    let measure = |build: &dyn Fn() -> Box<dyn std::any::Any>| {
        let before = LIVE.load(Ordering::Relaxed);
        let map = build();
        let bytes = LIVE.load(Ordering::Relaxed) - before;
        drop(map);
        bytes as f64 / n as f64
    };
    let hash_map = measure(&|| {
        let mut m = HashMap::new();
        for k in &keys {
            m.insert(k.clone(), value());
        }
        Box::new(m)
    });
    let aw = measure(&|| Box::new(filled(&keys, &mut Hlc::default())));
    let raw = (payload as f64) / n as f64 + inline as f64;
    println!("memory at {n} keys (64-byte values), heap bytes per entry:");
    println!("  key + value themselves        {raw:7.1}");
    println!(
        "  HashMap<String, Vec<u8>>      {hash_map:7.1}  overhead {:6.1}",
        hash_map - raw
    );
    println!(
        "  AwLwwMap<String, Vec<u8>>     {aw:7.1}  overhead {:6.1}  (ratio to HashMap {:.2})",
        aw - raw,
        aw / hash_map
    );
}

fn put_and_get(c: &mut Criterion) {
    for n in SIZES {
        let keys = keys(n);
        let mut clock = Hlc::default();
        let mut map = filled(&keys, &mut clock);
        let mut hash_map: HashMap<String, Vec<u8>> =
            keys.iter().map(|k| (k.clone(), value())).collect();
        let v = value();
        let mut group = c.benchmark_group("put");
        let mut i = 0usize;
        let mut wall = n as u64;
        group.bench_function(BenchmarkId::new("AwLwwMap", n), |b| {
            b.iter(|| {
                i = (i + 7919) % n;
                wall += 1;
                let ts = clock.now(wall);
                black_box(map.put(A, ts, keys[i].clone(), v.clone()));
            })
        });
        group.bench_function(BenchmarkId::new("HashMap", n), |b| {
            b.iter(|| {
                i = (i + 7919) % n;
                black_box(hash_map.insert(keys[i].clone(), v.clone()));
            })
        });
        group.finish();

        let mut group = c.benchmark_group("get");
        group.bench_function(BenchmarkId::new("AwLwwMap", n), |b| {
            b.iter(|| {
                i = (i + 7919) % n;
                black_box(map.get(&keys[i]));
            })
        });
        group.bench_function(BenchmarkId::new("HashMap", n), |b| {
            b.iter(|| {
                i = (i + 7919) % n;
                black_box(hash_map.get(&keys[i]));
            })
        });
        group.finish();
    }
}

fn join_and_delta(c: &mut Criterion) {
    for n in SIZES {
        let keys = keys(n);
        let mut clock = Hlc::default();
        let mut a = filled(&keys, &mut clock);
        let mut b = a.clone();
        let mut group = c.benchmark_group("join_delta");
        let mut i = 0usize;
        let mut wall = n as u64;
        // Each iteration joins a fresh delta from another replica (made outside the timing).
        group.bench_function(BenchmarkId::new("AwLwwMap", n), |bench| {
            bench.iter_batched(
                || {
                    i = (i + 7919) % n;
                    wall += 1;
                    b.put(B, clock.now(wall), keys[i].clone(), value())
                },
                |delta| a.join(&delta),
                BatchSize::SmallInput,
            )
        });
        group.finish();

        // Δ(a, b) between full states where b missed 1% of a's writes (at least 10).
        let mut behind = a.clone();
        let mut ahead = a;
        for j in 0..(n / 100).max(10) {
            wall += 1;
            let k = keys[(j * 7919) % n].clone();
            ahead.put(A, clock.now(wall), k, value());
        }
        behind.join(&AwLwwMap::default());
        let mut group = c.benchmark_group("delta");
        group.sample_size(10);
        group.bench_function(BenchmarkId::new("AwLwwMap/full-states", n), |bench| {
            bench.iter(|| black_box(ahead.delta(&behind)))
        });
        // Δ(d, x): what a received delta adds to the receiver (forwarding only what is new).
        let fresh = ahead.put(A, clock.now(wall + 1), keys[0].clone(), value());
        group.bench_function(BenchmarkId::new("AwLwwMap/delta-vs-state", n), |bench| {
            bench.iter(|| black_box(fresh.delta(&behind)))
        });
        group.finish();
    }
}

fn main() {
    report_memory();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    put_and_get(&mut c);
    join_and_delta(&mut c);
    c.final_summary();
}
