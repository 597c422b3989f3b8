//! Measurements behind the `merkle` module's defaults: the hash (xxh3 vs blake3 on ~90-byte
//! entries), the update cost per fan-out, and the bytes a descent exchanges to locate d
//! differing keys among n = 100,000 for each shape (printed as a table before the timings).
//!
//! Run with `cargo bench --bench merkle`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};
use herd::merkle::{Digest, KeyHash, MerkleTree, Shape};

const N: u64 = 100_000;

/// A ~90-byte canonical entry: roughly a key, an HLC timestamp, a dot and a small value.
fn entry(i: u64, version: u64) -> [u8; 90] {
    let mut bytes = [0u8; 90];
    for (j, chunk) in bytes.chunks_mut(8).enumerate() {
        let word = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ version.rotate_left(j as u32 * 7);
        chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
    }
    bytes
}

fn key(i: u64) -> KeyHash {
    KeyHash::of(&i.to_le_bytes())
}

fn filled(shape: Shape, n: u64) -> MerkleTree {
    let mut tree = MerkleTree::new(shape).expect("valid shape");
    for i in 0..n {
        tree.insert(key(i), Digest::of(&entry(i, 0)));
    }
    tree
}

fn bench_hash(c: &mut Criterion) {
    let bytes = entry(42, 7);
    let mut group = c.benchmark_group("hash_90B");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("xxh3_64", |b| {
        b.iter(|| xxhash_rust::xxh3::xxh3_64(black_box(&bytes)))
    });
    group.bench_function("blake3", |b| {
        b.iter(|| {
            let hash = blake3::hash(black_box(&bytes));
            let mut first = [0u8; 8];
            first.copy_from_slice(&hash.as_bytes()[..8]);
            u64::from_le_bytes(first)
        })
    });
    group.finish();
}

/// The shapes compared: the three fan-outs asked about, each at depths around 2^16 leaves.
const SHAPES: [(u16, u8); 9] = [
    (4, 6),
    (4, 8),
    (4, 9),
    (16, 3),
    (16, 4),
    (16, 5),
    (64, 2),
    (64, 3),
    (64, 4),
];

fn bench_update(c: &mut Criterion) {
    let mut group = c.benchmark_group("update_n100k");
    for (fan_out, depth) in [(4, 8), (16, 4), (64, 3)] {
        let mut tree = filled(Shape { fan_out, depth }, N);
        let digests = [Digest::of(&entry(0, 1)), Digest::of(&entry(0, 2))];
        let mut i = 0u64;
        group.bench_function(
            BenchmarkId::from_parameter(format!("f{fan_out}_d{depth}")),
            |b| {
                b.iter(|| {
                    i = i.wrapping_add(1);
                    // Change an existing key's digest: the steady-state case on every join.
                    tree.insert(key(i % N), digests[(i / N % 2) as usize])
                })
            },
        );
    }
    group.finish();
}

fn print_descent_costs() {
    println!("descent cost, n = {N}: rounds / digest bytes / leaf-entry bytes / stored nodes");
    println!(
        "{:>10} {:>8} {:>6} {:>12} {:>12} {:>12} {:>8}",
        "shape", "d", "rounds", "digest_B", "leaf_B", "total_B", "nodes"
    );
    for (fan_out, depth) in SHAPES {
        let shape = Shape { fan_out, depth };
        let a = filled(shape, N);
        for d in [1, 100, 10_000] {
            let mut b = a.clone();
            // Hashed keys are spread uniformly, so the first d keys are a random sample.
            for i in 0..d {
                b.insert(key(i), Digest::of(&entry(i, 1)));
            }
            let cmp = a.compare(&b).expect("same shape");
            assert_eq!(cmp.differing_leaves.is_empty(), d == 0);
            let (digest_bytes, leaf_bytes) = (cmp.digest_bytes(), cmp.leaf_bytes());
            println!(
                "{:>10} {:>8} {:>6} {:>12} {:>12} {:>12} {:>8}",
                format!("{fan_out}^{depth}"),
                d,
                cmp.rounds,
                digest_bytes,
                leaf_bytes,
                digest_bytes + leaf_bytes,
                a.node_count()
            );
        }
    }
}

fn main() {
    print_descent_costs();
    let mut c = Criterion::default().configure_from_args();
    bench_hash(&mut c);
    bench_update(&mut c);
    c.final_summary();
}
