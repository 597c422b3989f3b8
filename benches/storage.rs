//! Measurements behind the `storage` module's figures: the cost of `apply` with a durable
//! commit (one fsync) and with write-behind, for a batch of 1 entry and of 1,000 entries
//! (~90 bytes each), and the cost of loading 100,000 entries after a restart.
//!
//! The stores live under Cargo's target tmp directory (a real disk, not a tmpfs, so that
//! fsync costs what it costs). Run with `cargo bench --bench storage`.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput};
use herd::storage::{RedbConfig, RedbStorage, Storage, WriteBatch};

/// A ~90-byte entry: roughly a key, an HLC timestamp, a dot and a small value.
fn entry(i: u64) -> Vec<u8> {
    (0..90u64)
        .map(|j| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (j % 56)) as u8)
        .collect()
}

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:012}").into_bytes()
}

/// `len` consecutive entries from `start`, with a ~40-byte context as a replica would write.
fn batch(start: u64, len: u64) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for i in start..start + len {
        batch.put(key(i), entry(i));
    }
    batch.set_context(vec![7; 40]);
    batch
}

fn open(dir: &Path, config: RedbConfig) -> RedbStorage {
    let store = RedbStorage::open(dir, "bench", config).expect("open");
    store.init(1).expect("init");
    store
}

fn configs() -> [(&'static str, RedbConfig); 2] {
    [
        ("durable", RedbConfig::durable()),
        (
            "write_behind_100ms",
            RedbConfig::write_behind(Duration::from_millis(100)),
        ),
    ]
}

fn bench_apply(c: &mut Criterion) {
    for len in [1u64, 1_000] {
        let mut group = c.benchmark_group(format!("apply_{len}_entries"));
        group.throughput(Throughput::Elements(len));
        group.sample_size(20);
        group.measurement_time(Duration::from_secs(5));
        for (name, config) in configs() {
            let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tmp dir");
            let store = open(dir.path(), config);
            let mut next = 0u64;
            group.bench_function(name, |b| {
                b.iter_batched(
                    || {
                        let batch = batch(next, len);
                        next += len;
                        batch
                    },
                    |batch| store.apply(black_box(&batch)).expect("apply"),
                    BatchSize::SmallInput,
                )
            });
            store.flush().expect("flush");
        }
        group.finish();
    }
}

fn bench_load(c: &mut Criterion) {
    const N: u64 = 100_000;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tmp dir");
    {
        let store = open(dir.path(), RedbConfig::durable());
        for start in (0..N).step_by(10_000) {
            store.apply(&batch(start, 10_000)).expect("apply");
        }
    }
    let store = RedbStorage::open(dir.path(), "bench", RedbConfig::durable()).expect("reopen");
    let mut group = c.benchmark_group("load");
    group.throughput(Throughput::Elements(N));
    group.sample_size(10);
    group.bench_function("100k_entries", |b| {
        b.iter(|| {
            let snapshot = store.load().expect("load").expect("initialized");
            let mut bytes = 0usize;
            for item in snapshot.entries {
                let (key, entry) = item.expect("entry");
                bytes += key.len() + entry.len();
            }
            assert_eq!(bytes as u64, N * (16 + 90));
            bytes
        })
    });
    group.finish();
}

criterion::criterion_group!(benches, bench_apply, bench_load);
criterion::criterion_main!(benches);
