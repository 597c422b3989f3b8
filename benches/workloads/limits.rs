//! Message limits over real processes (`cluster-limits`): three `herd node` children on
//! loopback, driven with the same client as the integration tests.
//!
//! * 100,000 keys (`k<i>`, 64-byte values) put on A with `--max-sync-size 16384` on every
//!   node: time from the last put until B holds them all (goal ≤ 1 s), and until a peer that
//!   joins empty afterwards holds them all (goal ≤ 2 s); the same with the 1 MiB default as
//!   the same-run baseline.
//! * Mixed limits: 10,000 keys written on the 1 MiB side and on the 2 KB side, bytes both
//!   ways until converged, against both nodes at 1 MiB (goal ≤ 1.3×).

#[path = "../../src/bin/herd/client.rs"]
#[allow(dead_code, unreachable_pub)]
mod client;

use crate::report::Report;
use client::{NodeProcess, NodeSpec};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const KEYS: usize = 100_000;
const SMALL: usize = 16_384;
const DEADLINE: Duration = Duration::from_secs(120);

fn spawn(spec: NodeSpec) -> NodeProcess {
    let exe = super::cluster::herd_bin();
    NodeProcess::spawn(Path::new(&exe), spec, DEADLINE).expect("start herd node")
}

fn ok(node: &mut NodeProcess, command: &str) -> Value {
    node.ok(command, DEADLINE)
        .unwrap_or_else(|e| panic!("{command}: {e}"))
}

fn number(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

fn spec(name: &str, limit: Option<usize>) -> NodeSpec {
    let spec = NodeSpec::new(name).sync_interval_ms(50);
    match limit {
        Some(bytes) => spec.max_sync_size(bytes),
        None => spec,
    }
}

/// Milliseconds from the last put on A until B, then a late joiner, hold all keys.
fn throughput(tag: &str, limit: Option<usize>) -> (f64, f64) {
    let mut a = spawn(spec(&format!("{tag}-a"), limit));
    let mut b = spawn(spec(&format!("{tag}-b"), limit).seed(a.listen()));
    ok(&mut b, "await-neighbours 1 30000");
    ok(&mut a, "await-neighbours 1 30000");
    b.send(&format!("await-count {KEYS} {}", DEADLINE.as_millis()))
        .expect("send");
    ok(&mut a, &format!("bulk-put k {KEYS} 64"));
    let last_put = Instant::now();
    let v = b.recv("await-count", DEADLINE).expect("answer");
    assert_eq!(v["ok"], true, "{v}");
    let on_b = last_put.elapsed().as_secs_f64() * 1e3;

    let started = Instant::now();
    let mut c = spawn(spec(&format!("{tag}-c"), limit).seed(a.listen()));
    ok(
        &mut c,
        &format!("await-count {KEYS} {}", DEADLINE.as_millis()),
    );
    let on_late = started.elapsed().as_secs_f64() * 1e3;
    for node in [&mut a, &mut b, &mut c] {
        node.kill();
    }
    (on_b, on_late)
}

/// Bytes both ways until two nodes with limits `la` and `lb` converge on 10,000 keys written
/// on each side (5,000 each).
fn mixed_bytes(tag: &str, la: usize, lb: usize) -> f64 {
    let mut a = spawn(spec(&format!("{tag}-a"), Some(la)));
    let mut b = spawn(spec(&format!("{tag}-b"), Some(lb)).seed(a.listen()));
    ok(&mut b, "await-neighbours 1 30000");
    ok(&mut a, "await-neighbours 1 30000");
    ok(&mut a, "bulk-put a 5000 64");
    ok(&mut b, "bulk-put b 5000 64");
    for node in [&mut a, &mut b] {
        ok(node, &format!("await-count 10000 {}", DEADLINE.as_millis()));
    }
    let end = Instant::now() + DEADLINE;
    let bytes = loop {
        let (sa, sb) = (ok(&mut a, "stats"), ok(&mut b, "stats"));
        if number(&sa, "/replica/root") == number(&sb, "/replica/root") {
            break number(&sa, "/replica/bytes_sent") + number(&sb, "/replica/bytes_sent");
        }
        assert!(Instant::now() < end, "no convergence");
        std::thread::sleep(Duration::from_millis(20));
    };
    for node in [&mut a, &mut b] {
        node.kill();
    }
    bytes as f64
}

pub(crate) fn cluster_limits(r: &mut Report) {
    let (default_b, default_late) = throughput("lim-default", None);
    let (small_b, small_late) = throughput("lim-16k", Some(SMALL));
    r.record(
        "last_put_to_all_on_b_100000_limit_1mib",
        default_b,
        "ms",
        None,
    );
    r.record(
        "last_put_to_all_on_b_100000_limit_16k",
        small_b,
        "ms",
        Some(1_000.0),
    );
    r.record(
        "late_joiner_holds_all_100000_limit_1mib",
        default_late,
        "ms",
        None,
    );
    r.record(
        "late_joiner_holds_all_100000_limit_16k",
        small_late,
        "ms",
        Some(2_000.0),
    );

    let same = mixed_bytes("lim-same", 1 << 20, 1 << 20);
    let small_first = mixed_bytes("lim-mix1", 2_000, 1 << 20);
    let large_first = mixed_bytes("lim-mix2", 1 << 20, 2_000);
    r.record("bytes_10000_keys_both_1mib", same, "bytes", None);
    r.record(
        "bytes_10000_keys_2k_and_1mib",
        small_first,
        "bytes",
        Some(1.3 * same),
    );
    r.record(
        "bytes_10000_keys_1mib_and_2k",
        large_first,
        "bytes",
        Some(1.3 * same),
    );
}
