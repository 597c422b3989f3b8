//! Cluster workloads W1–W5: the public API over real loopback TCP between two node processes.
//!
//! Node A runs in this process (`herd::cluster::Node` + a `Kv` replica, memory storage, like
//! DeltaCrdt); node B is the `herd node` program in a child process, driven over its stdin
//! line protocol. B dials A, so a fresh B can be started for each scenario while A stays up.
//! Keys are `"k<i>"`, values 64 bytes; the sync interval is 50 ms on both.
//!
//! * **W1** (`cluster-w1`): 100,000 `put`s awaited one by one; the same pipelined (8 writers
//!   in flight) and batched (`put_many`, 1,000 per call); 100,000 `get`s. Baselines from the same run: `HashMap` insert and get. Also
//!   with on-disk storage (redb): durable puts awaited one by one (each waits for an fsync,
//!   shared by writers in flight), pipelined durable puts (group commit), write-behind puts.
//! * **W2** (`cluster-w2`): time from the first put on A until B holds all of 10,000 and of
//!   100,000 keys (awaited puts), and the lag after the last put.
//! * **W3** (`cluster-w3`): both hold the same 100,000 keys; A updates 100: time until B has
//!   them, bytes through the transport both ways minus the idle traffic of the same window,
//!   against the encoded size of the 100 changed entries; idle bytes per tick per neighbour.
//! * **W4/W5** (`cluster-w4w5`): B's resident set growth holding 100,000 keys (bytes per key),
//!   and after A deletes them all and B converges, B's resident set against its empty
//!   baseline.

use crate::report::Report;
use herd::cluster::{Node, NodeConfig};
use herd::codec;
use herd::crdt::Embeddable;
use herd::replica::{Ack, Kv, ReplicaOptions};
use herd::storage::{RedbConfig, RedbStorage};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const KEYS: usize = 100_000;
const VALUE_LEN: usize = 64;
const SYNC_MS: u64 = 50;
const DEADLINE: Duration = Duration::from_secs(120);
const WRITERS: usize = 8;

fn key(i: usize) -> String {
    format!("k{i}")
}

fn value(i: usize) -> String {
    format!("{:0>width$}", format!("v{i}"), width = VALUE_LEN)
}

/// Keys and values made before any timing starts, so the figures measure herd rather than
/// string formatting; each call clones its key and value, like the HashMap baseline.
pub(crate) struct Data {
    pub(crate) keys: Vec<String>,
    pub(crate) values: Vec<String>,
}

impl Data {
    pub(crate) fn new(prefix: &str, n: usize) -> Data {
        Data {
            keys: (0..n).map(|i| format!("{prefix}{i}")).collect(),
            values: (0..n).map(value).collect(),
        }
    }
}

/// The `herd` binary: cargo sets `CARGO_BIN_EXE_herd` for benches; `HERD_BIN` overrides it.
pub(crate) fn herd_bin() -> String {
    std::env::var("HERD_BIN")
        .ok()
        .or_else(|| option_env!("CARGO_BIN_EXE_herd").map(str::to_owned))
        .expect("no herd binary: build it or set HERD_BIN")
}

/// Node B: a `herd node` child process and its answers.
pub(crate) struct Peer {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<Value>,
}

impl Peer {
    pub(crate) fn start(name: &str, seed: &str) -> Peer {
        Self::start_with(name, seed, &[])
    }

    /// [`start`](Self::start) with more arguments for `herd node` (e.g. `--data-dir`).
    pub(crate) fn start_with(name: &str, seed: &str, extra: &[&str]) -> Peer {
        Self::start_with_ready(name, seed, extra).0
    }

    /// [`start_with`](Self::start_with), and the node's ready line.
    pub(crate) fn start_with_ready(name: &str, seed: &str, extra: &[&str]) -> (Peer, Value) {
        let mut peer = Self::spawn(name, Some(seed), extra);
        let ready = peer.answer();
        assert_eq!(ready["event"], "ready", "{ready}");
        (peer, ready)
    }

    /// Starts `herd node` without waiting for it: its first answer is its ready line.
    /// Without a seed it starts a cluster of its own.
    pub(crate) fn spawn(name: &str, seed: Option<&str>, extra: &[&str]) -> Peer {
        let mut command = Command::new(herd_bin());
        command.args(["node", "--name", name, "--listen", "127.0.0.1:0"]);
        if let Some(seed) = seed {
            command.args(["--seed", seed]);
        }
        let mut child = command
            .args(["--sync-interval-ms", &SYNC_MS.to_string()])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn herd node");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && tx.send(v).is_err()
                {
                    return;
                }
            }
        });
        Peer {
            child,
            stdin,
            lines,
        }
    }

    /// The process id of the node.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn answer(&mut self) -> Value {
        self.answer_within(DEADLINE)
    }

    /// The next answer, waiting up to `wait`.
    pub(crate) fn answer_within(&mut self, wait: Duration) -> Value {
        self.lines
            .recv_timeout(wait)
            .expect("node B did not answer in time")
    }

    pub(crate) fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to node B");
        self.stdin.flush().expect("flush");
    }

    pub(crate) fn ask(&mut self, line: &str) -> Value {
        self.send(line);
        let v = self.answer();
        assert_eq!(v["ok"], true, "{line}: {v}");
        v
    }

    /// B's resident set, bytes (Linux), after B gave freed heap back to the system (the
    /// node does that every 10 s anyway; asking makes the reading not depend on timing).
    pub(crate) fn rss(&mut self) -> f64 {
        self.ask("trim");
        resident_bytes(self.child.id()).expect("VmRSS")
    }
}

/// A process's resident set, bytes, from `/proc/<pid>/status` (Linux).
pub(crate) fn resident_bytes(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb * 1024.0)
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Node A (in this process) and a fresh node B connected to it, with A's replica `kv`.
pub(crate) struct Pair {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) node: Node,
    scenario: usize,
}

impl Pair {
    pub(crate) fn new() -> Pair {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let node = rt
            .block_on(Node::start(
                NodeConfig::new("bench-a").listen("127.0.0.1:0".parse().expect("addr")),
            ))
            .expect("start node A");
        Pair {
            rt,
            node,
            scenario: 0,
        }
    }

    /// A fresh replica `kv` on A, in memory, syncing every [`SYNC_MS`].
    pub(crate) fn replica(&self) -> Kv {
        self.rt
            .block_on(Kv::start(
                &self.node,
                ReplicaOptions::new("kv").sync_interval(Duration::from_millis(SYNC_MS)),
            ))
            .expect("start replica A")
    }

    /// A fresh replica on A and a fresh node B, neighbours of each other.
    fn fresh(&mut self) -> (Kv, Peer) {
        self.scenario += 1;
        let seed = self.node.listen_addr().to_string();
        let kv = self.replica();
        let mut peer = Peer::start(&format!("bench-b{}", self.scenario), &seed);
        peer.ask("await-members 1 30000");
        let end = Instant::now() + DEADLINE;
        while kv.neighbours().is_empty() {
            assert!(Instant::now() < end, "A never saw B as a neighbour");
            std::thread::sleep(Duration::from_millis(1));
        }
        (kv, peer)
    }

    fn finish(&self, kv: Kv, peer: Peer) {
        drop(peer);
        self.rt.block_on(kv.stop()).expect("stop replica A");
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn put_all(pair: &Pair, kv: &Kv, range: std::ops::Range<usize>) -> Duration {
    let data = Data::new("k", range.end);
    let started = Instant::now();
    pair.rt.block_on(async {
        for i in range {
            kv.put(data.keys[i].clone(), data.values[i].clone())
                .await
                .expect("put");
        }
    });
    started.elapsed()
}

/// `WRITERS` tasks, each putting its share awaited one by one: `WRITERS` puts in flight.
fn put_pipelined(pair: &tokio::runtime::Runtime, kv: &Kv, prefix: &str, n: usize) -> Duration {
    let started = Instant::now();
    rt_pipelined(pair, kv, prefix, n);
    started.elapsed()
}

fn rt_pipelined(rt: &tokio::runtime::Runtime, kv: &Kv, prefix: &str, n: usize) {
    let data = std::sync::Arc::new(Data::new(prefix, n));
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..WRITERS {
            let kv = kv.clone();
            let data = data.clone();
            tasks.spawn(async move {
                for i in (w..n).step_by(WRITERS) {
                    kv.put(data.keys[i].clone(), data.values[i].clone())
                        .await
                        .expect("put");
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("writer");
        }
    });
}

/// `put_many` in batches of `BATCH`, one after the other.
pub(crate) fn put_batched(
    rt: &tokio::runtime::Runtime,
    kv: &Kv,
    prefix: &str,
    n: usize,
) -> Duration {
    const BATCH: usize = 1_000;
    let data = Data::new(prefix, n);
    let started = Instant::now();
    rt.block_on(async {
        for start in (0..n).step_by(BATCH) {
            let end = (start + BATCH).min(n);
            let batch = (start..end).map(|i| (data.keys[i].clone(), data.values[i].clone()));
            kv.put_many(batch).await.expect("put_many");
        }
    });
    started.elapsed()
}

pub(crate) fn w1(r: &mut Report) {
    let mut pair = Pair::new();
    let (kv, peer) = pair.fresh();
    let awaited = put_all(&pair, &kv, 0..KEYS);
    r.record("awaited_puts", rate(KEYS, awaited), "puts/s", None);

    let data = Data::new("k", KEYS);
    let started = Instant::now();
    let mut found = 0;
    for k in &data.keys {
        found += usize::from(kv.get(k).is_some());
    }
    let gets = started.elapsed();
    assert_eq!(found, KEYS);
    r.record("gets", rate(KEYS, gets), "gets/s", None);
    pair.finish(kv, peer);

    let (kv, peer) = pair.fresh();
    let pipelined = put_pipelined(&pair.rt, &kv, "k", KEYS);
    r.record("pipelined_puts", rate(KEYS, pipelined), "puts/s", None);
    pair.finish(kv, peer);

    let (kv, peer) = pair.fresh();
    let batched = put_batched(&pair.rt, &kv, "k", KEYS);
    r.record("batched_puts", rate(KEYS, batched), "puts/s", None);
    pair.finish(kv, peer);

    // Same-run baselines: a HashMap, the same keys and values (cloned per call like the
    // replica's caller does).
    let keys: Vec<String> = (0..KEYS).map(key).collect();
    let values: Vec<String> = (0..KEYS).map(value).collect();
    let mut map = HashMap::new();
    let started = Instant::now();
    for i in 0..KEYS {
        map.insert(keys[i].clone(), values[i].clone());
    }
    let insert = started.elapsed();
    r.record("hashmap_inserts", rate(KEYS, insert), "inserts/s", None);
    let started = Instant::now();
    let mut found = 0;
    for k in &keys {
        found += map.get(k).map_or(0, |v| v.len());
    }
    let get = started.elapsed();
    assert!(found > 0);
    r.record("hashmap_gets", rate(KEYS, get), "gets/s", None);

    // On-disk storage, local replicas (the cost is the disk's, not the network's).
    let dir = tempfile::tempdir().expect("tempdir");
    let durable_n = 2_000;
    let open = |name: &str, config: RedbConfig| {
        RedbStorage::open(dir.path(), name, config).expect("open redb")
    };
    let kv = pair
        .rt
        .block_on(Kv::start_local(
            ReplicaOptions::new("durable").storage(open("durable", RedbConfig::durable())),
        ))
        .expect("durable replica");
    let d = put_all(&pair, &kv, 0..durable_n);
    r.record("durable_awaited_puts", rate(durable_n, d), "puts/s", None);
    let d = put_pipelined(&pair.rt, &kv, "p", KEYS);
    r.record("durable_pipelined_puts", rate(KEYS, d), "puts/s", None);
    let d = put_batched(&pair.rt, &kv, "b", KEYS);
    r.record("durable_batched_puts", rate(KEYS, d), "puts/s", None);
    r.record(
        "durable_commits_per_put",
        kv.stats().storage_commits as f64 / (2 * KEYS + durable_n) as f64,
        "commits/put",
        None,
    );
    pair.rt.block_on(kv.stop()).expect("stop");
    let kv = pair
        .rt
        .block_on(Kv::start_local(
            ReplicaOptions::new("behind")
                .storage(open("behind", RedbConfig::durable()))
                .ack(Ack::Applied),
        ))
        .expect("write-behind replica");
    let d = put_all(&pair, &kv, 0..KEYS);
    r.record("write_behind_awaited_puts", rate(KEYS, d), "puts/s", None);
    pair.rt.block_on(kv.stop()).expect("stop");
}

pub(crate) fn w2(r: &mut Report) {
    let mut pair = Pair::new();
    for n in [10_000, KEYS] {
        let (kv, mut peer) = pair.fresh();
        peer.send(&format!("await-count {n} {}", DEADLINE.as_millis()));
        let started = Instant::now();
        put_all(&pair, &kv, 0..n);
        let last_put = Instant::now();
        let v = peer.answer();
        let visible = Instant::now();
        assert_eq!(v["ok"], true, "{v}");
        r.record(
            &format!("first_put_to_all_on_b_{n}"),
            (visible - started).as_secs_f64() * 1e3,
            "ms",
            None,
        );
        r.record(
            &format!("last_put_to_all_on_b_{n}"),
            (visible - last_put).as_secs_f64() * 1e3,
            "ms",
            Some(if n == KEYS { 1000.0 } else { 100.0 }),
        );
        pair.finish(kv, peer);
    }
}

/// Transport bytes A sent plus A received.
pub(crate) fn wire(kv: &Kv) -> u64 {
    let s = kv.stats();
    s.transport_bytes_sent + s.transport_bytes_received
}

pub(crate) fn w3(r: &mut Report) {
    const UPDATES: usize = 100;
    let mut pair = Pair::new();
    let (kv, mut peer) = pair.fresh();
    put_all(&pair, &kv, 0..KEYS);
    peer.ask(&format!("await-count {KEYS} {}", DEADLINE.as_millis()));
    let end = Instant::now() + DEADLINE;
    while kv.stats().buffered_deltas > 0 || kv.stats().root != peer_root(&mut peer) {
        assert!(Instant::now() < end, "never converged");
        std::thread::sleep(Duration::from_millis(10));
    }

    // Idle: both directions over a window, per tick per neighbour (one neighbour).
    let idle_window = Duration::from_secs(3);
    let (sent0, wire0) = (kv.stats().transport_bytes_sent, wire(&kv));
    std::thread::sleep(idle_window);
    let ticks = idle_window.as_millis() as f64 / SYNC_MS as f64;
    let idle_sent = (kv.stats().transport_bytes_sent - sent0) as f64 / ticks;
    let idle_both_per_sec = (wire(&kv) - wire0) as f64 / idle_window.as_secs_f64();
    r.record(
        "idle_bytes_per_tick_per_neighbour",
        idle_sent,
        "bytes",
        Some(64.0),
    );

    // The update: 100 keys, then wait until B has the last one and the deltas are acked.
    let last = UPDATES - 1;
    let new_value = |i: usize| format!("{}-updated", &value(i)[..VALUE_LEN - 8]);
    peer.send(&format!(
        "await-key {} {} {}",
        key(last),
        new_value(last),
        DEADLINE.as_millis()
    ));
    let before = wire(&kv);
    let started = Instant::now();
    pair.rt.block_on(async {
        for i in 0..UPDATES {
            kv.put(key(i), new_value(i)).await.expect("put");
        }
    });
    let v = peer.answer();
    let visible = started.elapsed();
    assert_eq!(v["ok"], true, "{v}");
    for i in [0, UPDATES / 2] {
        let got = peer.ask(&format!("get {}", key(i)));
        assert_eq!(got["value"], new_value(i), "{got}");
    }
    let end = Instant::now() + DEADLINE;
    while kv.stats().buffered_deltas > 0 {
        assert!(Instant::now() < end, "deltas never acked");
        std::thread::sleep(Duration::from_millis(1));
    }
    let window = started.elapsed();
    let bytes = (wire(&kv) - before) as f64 - idle_both_per_sec * window.as_secs_f64();
    // The physical limit: the 100 changed entries, encoded (key and its dot store).
    let entries: usize = kv.read(|m| {
        (0..UPDATES)
            .map(|i| {
                let k = key(i);
                let store = m.as_causal().store().get(&k).expect("updated key");
                codec::encoded_len(&(&k, store)).expect("encode")
            })
            .sum()
    });
    r.record(
        "update_100_visible_on_b",
        visible.as_secs_f64() * 1e3,
        "ms",
        None,
    );
    r.record("update_100_bytes", bytes, "bytes", Some(entries as f64));
    pair.finish(kv, peer);
}

fn peer_root(peer: &mut Peer) -> u64 {
    let v = peer.ask("stats");
    find_u64(&v, "root").expect("root in stats")
}

/// The first number under `field`, searched depth-first (the stats answer nests).
fn find_u64(v: &Value, field: &str) -> Option<u64> {
    match v {
        Value::Object(map) => map
            .get(field)
            .and_then(Value::as_u64)
            .or_else(|| map.values().find_map(|x| find_u64(x, field))),
        _ => None,
    }
}

pub(crate) fn w4w5(r: &mut Report) {
    let mut pair = Pair::new();
    let (kv, mut peer) = pair.fresh();
    let empty = peer.rss();
    put_all(&pair, &kv, 0..KEYS);
    peer.ask(&format!("await-count {KEYS} {}", DEADLINE.as_millis()));
    wait_acked(&kv);
    let full = peer.rss();
    r.record(
        "rss_per_key_on_b",
        (full - empty) / KEYS as f64,
        "bytes",
        Some(200.0),
    );
    pair.rt.block_on(async {
        for i in 0..KEYS {
            kv.delete(&key(i)).await.expect("delete");
        }
    });
    peer.ask(&format!("await-count 0 {}", DEADLINE.as_millis()));
    wait_acked(&kv);
    let after = peer.rss();
    r.record("rss_empty_on_b", empty, "bytes", None);
    r.record(
        "rss_after_delete_all_on_b",
        after,
        "bytes",
        Some(empty * 1.05),
    );
    pair.finish(kv, peer);
}

pub(crate) fn wait_acked(kv: &Kv) {
    let end = Instant::now() + DEADLINE;
    while kv.stats().buffered_deltas > 0 {
        assert!(Instant::now() < end, "deltas never acked");
        std::thread::sleep(Duration::from_millis(5));
    }
}
