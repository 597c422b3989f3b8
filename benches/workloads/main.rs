//! herd's workload runner: end-to-end figures (bytes on the wire, throughput) next to their
//! physical limit or a same-run baseline, printed as one markdown table.
//!
//! `cargo bench --bench workloads` runs every workload; `cargo bench --bench workloads -- sync`
//! runs those whose name contains `sync` (arguments starting with `--` are ignored). Besides
//! the table, each figure is written as one JSON object per line, with the fields `workload`,
//! `metric`, `value`, `unit` and `limit` (`null` if none), to
//! `$CARGO_TARGET_DIR/workloads/<workload>.jsonl` (default `target/workloads/`); a workload's
//! file is truncated when that workload starts.
//!
//! # Adding a workload
//!
//! Write a `fn my_workload(r: &mut Report)` that calls
//! `r.record(metric, value, unit, limit)` once per figure (`limit`: the physical limit or the
//! same-run baseline in the same unit, else `None`), then add one line to [`WORKLOADS`]:
//! `("my-workload", my_workload),`. Name sync-protocol workloads `sync-*` so that
//! `-- sync` selects them, cluster workloads (two real node processes) `cluster-*`, product
//! workloads `products-*` and fault scenarios `nemesis-*`. [`report::median_time`] times a closure (median of n runs).

mod cluster;
mod limits;
mod membership;
mod nemesis;
mod products;
mod registry;
mod report;
mod scale;
mod scale_nodes;
mod supervisor;
mod sync;
mod sync_document;

use herd::clock::Hlc;
use herd::codec;
use herd::crdt::{AwLwwMap, ReplicaId};
use report::{Report, Workload, median_time};
use std::hint::black_box;

/// Every workload, by name. Adding one is one line here plus its function.
const WORKLOADS: &[Workload] = &[
    ("codec", codec_workload),
    ("sync-delta", sync::sync_delta),
    ("sync-repair", sync::sync_repair),
    ("sync-idle", sync::sync_idle),
    ("sync-document", sync_document::sync_document),
    ("cluster-w1", cluster::w1),
    ("cluster-w2", cluster::w2),
    ("cluster-w3", cluster::w3),
    ("cluster-w4w5", cluster::w4w5),
    ("cluster-limits", limits::cluster_limits),
    ("sync-limits", sync::sync_limits),
    ("products-agent", products::agent),
    ("products-presence", products::presence),
    ("products-registry", registry::registry),
    ("products-supervisor", supervisor::supervisor),
    ("cluster-membership", membership::membership),
    ("scale", scale::scale),
    ("scale-nodes", scale_nodes::scale_nodes),
    // The order of `tests/support/nemesis.rs`'s SCENARIOS (checked by `nemesis_names_match`).
    ("nemesis-split-kill", nemesis::run::<0>),
    ("nemesis-rolling-restart", nemesis::run::<1>),
    ("nemesis-stop-resume", nemesis::run::<2>),
    ("nemesis-wipe-rejoin", nemesis::run::<3>),
    ("nemesis-bad-links", nemesis::run::<4>),
    ("nemesis-bad-input", nemesis::run::<5>),
    ("nemesis-presence-split", nemesis::run::<6>),
    ("nemesis-supervisor-split", nemesis::run::<7>),
    ("nemesis-registry-split", nemesis::run::<8>),
    ("nemesis-agent-split", nemesis::run::<9>),
];

fn main() {
    products::run_role_if_child();
    registry::run_role_if_child();
    supervisor::run_role_if_child();
    nemesis::names_match(WORKLOADS);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run = report::selected(WORKLOADS, &args);
    if run.is_empty() {
        let names: Vec<&str> = WORKLOADS.iter().map(|(name, _)| *name).collect();
        eprintln!(
            "no workload matches {args:?}; workloads: {}",
            names.join(", ")
        );
        std::process::exit(2);
    }
    let mut report = Report::new(Report::default_dir());
    for (name, workload) in run {
        eprintln!("running {name}");
        report.begin(name);
        workload(&mut report);
        report.finish();
    }
    print!("{}", report.table());
}

/// Wire size and speed of `herd::codec` on a 100,000-key `AwLwwMap<String, Vec<u8>>` with
/// 64-byte values, against the raw payload (key bytes + value bytes).
fn codec_workload(r: &mut Report) {
    const KEYS: u64 = 100_000;
    const VALUE_LEN: usize = 64;
    const RUNS: usize = 5;
    let value = |i: u64| vec![i as u8; VALUE_LEN];

    let me = ReplicaId::new(1);
    let mut clock = Hlc::default();
    let mut map: AwLwwMap<String, Vec<u8>> = AwLwwMap::new();
    let mut raw = 0usize;
    for i in 0..KEYS {
        let key = format!("k{i}");
        raw += key.len() + VALUE_LEN;
        map.put(me, clock.now(i), key, value(i));
    }
    let n = KEYS as f64;

    let full = codec::encode(&map, usize::MAX).expect("encode the full state");
    r.record(
        "full_state_bytes",
        full.len() as f64,
        "bytes",
        Some(raw as f64),
    );
    r.record(
        "bytes_per_entry",
        full.len() as f64 / n,
        "bytes",
        Some(raw as f64 / n),
    );

    let encode = median_time(RUNS, || {
        black_box(codec::encode(black_box(&map), usize::MAX).expect("encode"));
    });
    r.record("encode", n / encode.as_secs_f64(), "entries/s", None);

    let decode = median_time(RUNS, || {
        let back: AwLwwMap<String, Vec<u8>> =
            codec::decode(black_box(&full), usize::MAX).expect("decode");
        assert_eq!(back.len(), map.len());
        black_box(back);
    });
    r.record("decode", n / decode.as_secs_f64(), "entries/s", None);

    let key = format!("k{KEYS}");
    let key_len = key.len();
    let delta = map.put(me, clock.now(KEYS), key, value(KEYS));
    let delta = codec::encode(&delta, usize::MAX).expect("encode a put delta");
    r.record(
        "put_delta_bytes",
        delta.len() as f64,
        "bytes",
        Some((key_len + VALUE_LEN) as f64),
    );
}
