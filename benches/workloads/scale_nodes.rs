//! `-- scale-nodes`: many `herd node` processes in one cluster on loopback.
//!
//! For each cluster size N (8, 16, 32, 64; `HERD_SCALE_NODES=8,16` to change):
//!
//! * `join_all_at_once`: one seed node up, then N - 1 nodes started at once with it as their
//!   only seed: from their start until every one of them sees N - 1 others;
//! * `put_everywhere_p50` / `_p99`: a put on one node (a different one each time, 100 puts)
//!   until every other node answered that it holds it;
//! * `idle_bytes_per_node_per_s`: once converged and idle, the messages every group of a node
//!   sends (replicas and heartbeats, herd's envelope included, plus 20 bytes of ractor's
//!   framing per message), per node per second, over 10 s (goal: the same for every N, and
//!   ≤ 2 KB at 32 nodes);
//! * `idle_cpu_all_nodes`: CPU time of all N processes together over those 10 s, in cores
//!   (goal ≤ 0.15 at 32 nodes);
//! * `rss_per_node`: resident set per process.
//!
//! Then two nodes running R more idle replicas each (R = 10, 100, 1,000;
//! `HERD_SCALE_REPLICAS`): `idle_cpu_two_nodes_r<R>`, their CPU together while idle (goal ≤
//! 0.05 cores at R = 1,000).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::{Peer, resident_bytes};
use crate::report::Report;

/// How long any one step may take.
const DEADLINE: Duration = Duration::from_secs(120);
/// The idle window measured.
const IDLE_WINDOW: Duration = Duration::from_secs(10);
/// Time for a converged cluster to reach its idle digest interval (64 ticks of 50 ms,
/// reached after 127) and for start-up traffic to end.
const SETTLE: Duration = Duration::from_secs(8);
/// How long a put may take to reach every node before it counts as missed.
const PUT_DEADLINE: Duration = Duration::from_secs(10);
/// Puts timed per cluster size.
const PUTS: usize = 100;
/// Bytes of ractor's framing per message (a length prefix and its message envelope).
const FRAMING: u64 = 20;

fn list(var: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(var)
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

pub(crate) fn scale_nodes(r: &mut Report) {
    for n in list("HERD_SCALE_NODES", &[8, 16, 32, 64]) {
        cluster_of(r, n);
    }
    for replicas in list("HERD_SCALE_REPLICAS", &[10, 100, 1_000]) {
        two_nodes_with(r, replicas);
    }
}

fn cluster_of(r: &mut Report, n: usize) {
    assert!(n >= 2, "a cluster of {n}");
    let (seed, ready) = {
        let mut seed = Peer::spawn("s0", None, &[]);
        let ready = seed.answer_within(DEADLINE);
        (seed, ready)
    };
    let addr = ready["listen"].as_str().expect("listen address").to_owned();
    let started = Instant::now();
    let mut nodes = vec![seed];
    for i in 1..n {
        nodes.push(Peer::spawn(&format!("s{i}"), Some(&addr), &[]));
    }
    let mut failed = 0;
    for (i, node) in nodes.iter_mut().enumerate().skip(1) {
        let ready = node.answer_within(DEADLINE);
        if ready["event"] != "ready" {
            eprintln!("s{i} did not start: {ready}");
            failed += 1;
        }
    }
    r.record(
        &format!("nodes_failed_to_start_n{n}"),
        f64::from(failed),
        "nodes",
        None,
    );
    if failed > 0 {
        return;
    }
    let others = n - 1;
    for node in &mut nodes {
        node.send(&format!("await-members {others} {}", DEADLINE.as_millis()));
    }
    let mut short = 0;
    for (i, node) in nodes.iter_mut().enumerate() {
        let answer = node.answer_within(DEADLINE + Duration::from_secs(5));
        if answer["ok"] != true {
            let seen = answer["members"].as_array().map_or(0, Vec::len);
            eprintln!("s{i} saw {seen} of {others} others after {DEADLINE:?}");
            short += 1;
        }
    }
    let joined = started.elapsed();
    r.record(
        &format!("nodes_not_joined_n{n}"),
        f64::from(short),
        "nodes",
        None,
    );
    if short > 0 {
        // The rest needs every node in the cluster.
        return;
    }
    r.record(
        &format!("join_all_at_once_n{n}"),
        ms(joined),
        "ms",
        Some(10_000.0),
    );

    eprintln!("{n} nodes joined in {joined:?}");
    let mut latencies = Vec::with_capacity(PUTS);
    let mut missed = 0;
    for p in 0..PUTS {
        let writer = (p * 7) % n;
        let (key, value) = (format!("p{p}"), format!("v{p}"));
        for (i, node) in nodes.iter_mut().enumerate() {
            if i != writer {
                node.send(&format!(
                    "await-key {key} {value} {}",
                    PUT_DEADLINE.as_millis()
                ));
            }
        }
        let put = Instant::now();
        nodes[writer].ask(&format!("put {key} {value}"));
        for (i, node) in nodes.iter_mut().enumerate() {
            if i != writer {
                let seen = node.answer_within(DEADLINE);
                if seen["ok"] != true {
                    eprintln!("{key} did not reach s{i} within {PUT_DEADLINE:?}: {seen}");
                    missed += 1;
                }
            }
        }
        latencies.push(ms(put.elapsed()));
    }
    r.record(
        &format!("put_not_everywhere_in_10s_n{n}"),
        f64::from(missed),
        "nodes",
        None,
    );
    latencies.sort_by(f64::total_cmp);
    r.record(
        &format!("put_everywhere_p50_n{n}"),
        percentile(&latencies, 0.50),
        "ms",
        None,
    );
    r.record(
        &format!("put_everywhere_p99_n{n}"),
        percentile(&latencies, 0.99),
        "ms",
        Some(300.0),
    );

    eprintln!("{n} nodes: puts done, measuring idle");
    let (bytes, cpu) = idle(&mut nodes);
    r.record(
        &format!("idle_bytes_per_node_per_s_n{n}"),
        bytes / n as f64,
        "bytes",
        Some(2_000.0),
    );
    r.record(
        &format!("idle_cpu_all_nodes_n{n}"),
        cpu,
        "cores",
        Some(0.15),
    );
    let rss: f64 = nodes
        .iter()
        .map(|p| resident_bytes(p.pid()).unwrap_or(0.0))
        .sum::<f64>()
        / n as f64;
    r.record(&format!("rss_per_node_n{n}"), rss / 1e6, "MB", None);
}

fn two_nodes_with(r: &mut Report, replicas: usize) {
    let count = replicas.to_string();
    let extra = ["--idle-replicas", count.as_str()];
    let mut a = Peer::spawn("r0", None, &extra);
    let ready = a.answer_within(DEADLINE);
    let addr = ready["listen"].as_str().expect("listen address").to_owned();
    let mut b = Peer::spawn("r1", Some(&addr), &extra);
    let ready = b.answer_within(DEADLINE);
    assert_eq!(ready["event"], "ready", "{ready}");
    for node in [&mut a, &mut b] {
        node.ask(&format!("await-members 1 {}", DEADLINE.as_millis()));
    }
    let mut nodes = vec![a, b];
    let (_, cpu) = idle(&mut nodes);
    r.record(
        &format!("idle_cpu_two_nodes_r{replicas}"),
        cpu,
        "cores",
        Some(0.05),
    );
}

/// Settles, then measures the idle window: bytes sent per second by all `nodes` together
/// (with ractor's framing), and their CPU in cores.
fn idle(nodes: &mut [Peer]) -> (f64, f64) {
    std::thread::sleep(SETTLE);
    let before: Vec<(u64, f64)> = nodes.iter_mut().map(|p| (sent(p), cpu(p.pid()))).collect();
    let start = Instant::now();
    std::thread::sleep(IDLE_WINDOW);
    let after: Vec<(u64, f64)> = nodes.iter_mut().map(|p| (sent(p), cpu(p.pid()))).collect();
    let secs = start.elapsed().as_secs_f64();
    let bytes: u64 = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.0.saturating_sub(b.0))
        .sum();
    let cpu: f64 = after.iter().zip(&before).map(|(a, b)| a.1 - b.1).sum();
    (bytes as f64 / secs, cpu / secs)
}

/// What a node's groups sent, with ractor's framing.
fn sent(peer: &mut Peer) -> u64 {
    let stats = peer.ask("stats");
    let cluster = &stats["cluster"];
    let field = |v: &Value, f: &str| v[f].as_u64().unwrap_or(0);
    field(cluster, "bytes_sent") + FRAMING * field(cluster, "frames_sent")
}

/// CPU seconds a process used so far (user + system), from `/proc/<pid>/stat`.
fn cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line: indices 11 and 12 after the command.
    (ticks(11) + ticks(12)) / USER_HZ
}

/// The unit of CPU times in `/proc` (Linux's USER_HZ, 100 on every common configuration).
const USER_HZ: f64 = 100.0;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
