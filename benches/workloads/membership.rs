//! `cluster-membership`: the failure detector and the membership events, measured with real
//! `herd node` processes on loopback at default detector settings.
//!
//! * `sigstop_to_down_ms`: SIGSTOP one of three nodes; time until **every** survivor has
//!   recorded it Down (from the survivors' event logs, Unix ms, the same clock). Median of
//!   [`RUNS`] runs; the goal is 2,000 ms.
//! * `sigcont_to_up_ms`: SIGCONT; time until every survivor has recorded it Up again.
//! * `sigstop_to_down_ms_n8` / `sigcont_to_up_ms_n8`: the same in a cluster of eight, where 3
//!   of the 7 survivors watch the stopped node and the other 4 hear their report and probe it
//!   themselves (expected: about twice `down_after`).
//! * `shutdown_to_down_ms`: a node is asked to `quit` (handover, leave announcement, exit);
//!   time until every survivor has recorded it Down. Goal 100 ms.
//! * `idle_bytes_per_peer_per_s`: TCP payload bytes (kernel `bytes_sent` from `ss`) one idle
//!   node sends to one peer per second, with the replica's sync interval set very long so
//!   only heartbeats and ractor's own pings remain; and the heartbeat bytes herd counts
//!   itself (envelope included, no ractor framing).
//! * `false_downs`: five idle nodes for `HERD_MEMBERSHIP_IDLE_SECS` seconds (default 300)
//!   while this process keeps every core busy with spinning threads; counts Down events
//!   (goal 0). Set `HERD_MEMBERSHIP_IDLE_SECS=0` to skip it.

use crate::report::Report;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const RUNS: usize = 3;
const DEADLINE: Duration = Duration::from_secs(60);

fn herd_bin() -> String {
    std::env::var("HERD_BIN")
        .ok()
        .or_else(|| option_env!("CARGO_BIN_EXE_herd").map(str::to_owned))
        .expect("no herd binary: build it or set HERD_BIN")
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A `herd node` child process.
struct Proc {
    name: String,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<Value>,
    listen: String,
}

impl Proc {
    fn start(name: &str, seed: Option<&str>, extra: &[&str]) -> Proc {
        let mut cmd = Command::new(herd_bin());
        cmd.args(["node", "--name", name, "--listen", "127.0.0.1:0"]);
        if let Some(seed) = seed {
            cmd.args(["--seed", seed]);
        }
        let mut child = cmd
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
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
        let ready = lines.recv_timeout(DEADLINE).expect("ready line");
        assert_eq!(ready["event"], "ready", "{ready}");
        let listen = ready["listen"].as_str().expect("listen").to_owned();
        Proc {
            name: name.to_owned(),
            child,
            stdin,
            lines,
            listen,
        }
    }

    fn ask(&mut self, line: &str) -> Value {
        writeln!(self.stdin, "{line}").expect("write to node");
        self.stdin.flush().expect("flush");
        let v = self.lines.recv_timeout(DEADLINE).expect("answer in time");
        assert_eq!(v["ok"], true, "{}: {line}: {v}", self.name);
        v
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// The Unix ms at which this node last recorded `event` ("up"/"down") for `peer`.
    fn last_event(&mut self, peer: &str, event: &str) -> Option<(u64, Option<String>)> {
        let answer = self.ask("events");
        answer["events"].as_array()?.iter().rev().find_map(|e| {
            (e["node"] == peer && e["event"] == event).then(|| {
                (
                    e["at_ms"].as_u64().unwrap_or(0),
                    e["reason"].as_str().map(str::to_owned),
                )
            })
        })
    }

    /// Waits until `peer` is (`up`) or is not a member here.
    fn await_state(&mut self, peer: &str, up: bool) {
        let state = if up { "up" } else { "down" };
        self.ask(&format!(
            "await-state {peer} {state} {}",
            DEADLINE.as_millis()
        ));
    }

    fn port(&self) -> u16 {
        self.listen
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .expect("port")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Time from `t0` until every survivor recorded `event` for `peer`.
fn until_all(survivors: &mut [&mut Proc], peer: &str, event: &str, t0: u64) -> f64 {
    let mut worst = 0u64;
    for s in survivors.iter_mut() {
        s.await_state(peer, event == "up");
        let (at, _) = s.last_event(peer, event).expect("event recorded");
        worst = worst.max(at.saturating_sub(t0));
    }
    worst as f64
}

fn await_members(nodes: &mut [&mut Proc], n: usize) {
    for p in nodes.iter_mut() {
        p.ask(&format!("await-members {n} {}", DEADLINE.as_millis()));
    }
}

pub(crate) fn membership(r: &mut Report) {
    let mut a = Proc::start("a", None, &[]);
    let seed = a.listen.clone();
    let mut b = Proc::start("b", Some(&seed), &[]);
    let mut c = Proc::start("c", Some(&seed), &[]);
    await_members(&mut [&mut a, &mut b, &mut c], 2);

    let (mut downs, mut ups) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        // Let the detector see a steady rhythm first.
        std::thread::sleep(Duration::from_secs(1));
        let t0 = unix_ms();
        c.signal("STOP");
        downs.push(until_all(&mut [&mut a, &mut b], "c", "down", t0));
        let t1 = unix_ms();
        c.signal("CONT");
        ups.push(until_all(&mut [&mut a, &mut b], "c", "up", t1));
        await_members(&mut [&mut c], 2);
    }
    r.record("sigstop_to_down_ms", median(downs), "ms", Some(2000.0));
    r.record("sigcont_to_up_ms", median(ups), "ms", Some(1000.0));

    let mut leaves = Vec::new();
    for i in 0..RUNS {
        let name = format!("d{i}");
        let mut d = Proc::start(&name, Some(&seed), &[]);
        await_members(&mut [&mut a, &mut b, &mut c], 3);
        await_members(&mut [&mut d], 3);
        let t0 = unix_ms();
        writeln!(d.stdin, "quit").expect("quit");
        d.stdin.flush().expect("flush");
        leaves.push(until_all(&mut [&mut a, &mut b, &mut c], &name, "down", t0));
        let _ = d.child.wait();
    }
    r.record("shutdown_to_down_ms", median(leaves), "ms", Some(100.0));
    drop((a, b, c));

    sigstop_in_eight(r);

    idle_bytes(r);

    let secs: u64 = std::env::var("HERD_MEMBERSHIP_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    if secs > 0 {
        false_downs(r, Duration::from_secs(secs));
    }
}

/// Every node but the `skip`th.
fn all_but(nodes: &mut [Proc], skip: usize) -> Vec<&mut Proc> {
    nodes
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| *i != skip)
        .map(|(_, p)| p)
        .collect()
}

/// SIGSTOP in a cluster of eight: most survivors do not watch the stopped node.
fn sigstop_in_eight(r: &mut Report) {
    const N: usize = 8;
    let first = Proc::start("r0", None, &[]);
    let seed = first.listen.clone();
    let mut nodes = vec![first];
    for i in 1..N {
        nodes.push(Proc::start(&format!("r{i}"), Some(&seed), &[]));
    }
    await_members(&mut nodes.iter_mut().collect::<Vec<_>>(), N - 1);
    let (mut downs, mut ups) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        std::thread::sleep(Duration::from_secs(1));
        // A different node each run, so each is watched by different survivors.
        let victim = 1 + run;
        let name = format!("r{victim}");
        let t0 = unix_ms();
        nodes[victim].signal("STOP");
        downs.push(until_all(
            &mut all_but(&mut nodes, victim),
            &name,
            "down",
            t0,
        ));
        let t1 = unix_ms();
        nodes[victim].signal("CONT");
        ups.push(until_all(&mut all_but(&mut nodes, victim), &name, "up", t1));
        await_members(&mut [&mut nodes[victim]], N - 1);
    }
    r.record("sigstop_to_down_ms_n8", median(downs), "ms", None);
    r.record("sigcont_to_up_ms_n8", median(ups), "ms", None);
}

/// Payload bytes the kernel sent on the established sockets whose local port is `port`.
fn tcp_bytes_sent(port: u16) -> u64 {
    let out = Command::new("ss")
        .args([
            "-tinH",
            "state",
            "established",
            "sport",
            "=",
            &format!(":{port}"),
        ])
        .output()
        .expect("ss");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .filter_map(|w| w.strip_prefix("bytes_sent:"))
        .filter_map(|n| n.parse::<u64>().ok())
        .sum()
}

fn idle_bytes(r: &mut Report) {
    // Replica ticks once an hour: what is left is heartbeats and ractor's pings.
    let quiet = ["--sync-interval-ms", "3600000"];
    let mut a = Proc::start("ia", None, &quiet);
    let mut b = Proc::start("ib", Some(&a.listen.clone()), &quiet);
    await_members(&mut [&mut a, &mut b], 1);
    std::thread::sleep(Duration::from_secs(1));
    // b dialed a: on a's side the session's socket has a's listen port as local port.
    let window = Duration::from_secs(10);
    let (tcp0, hb0) = (tcp_bytes_sent(a.port()), heartbeat_bytes(&mut a));
    let started = Instant::now();
    std::thread::sleep(window);
    let secs = started.elapsed().as_secs_f64();
    let (tcp1, hb1) = (tcp_bytes_sent(a.port()), heartbeat_bytes(&mut a));
    r.record(
        "idle_tcp_bytes_per_peer_per_s",
        (tcp1 - tcp0) as f64 / secs,
        "B/s",
        None,
    );
    r.record(
        "heartbeat_bytes_per_peer_per_s",
        (hb1 - hb0) as f64 / secs,
        "B/s",
        None,
    );
}

fn heartbeat_bytes(p: &mut Proc) -> u64 {
    let stats = p.ask("stats");
    stats["cluster"]["heartbeat_bytes_sent"]
        .as_u64()
        .unwrap_or(0)
}

fn false_downs(r: &mut Report, idle: Duration) {
    let first = Proc::start("f0", None, &[]);
    let seed = first.listen.clone();
    let mut nodes: Vec<Proc> = (1..5)
        .map(|i| Proc::start(&format!("f{i}"), Some(&seed), &[]))
        .collect();
    nodes.insert(0, first);
    {
        let mut refs: Vec<&mut Proc> = nodes.iter_mut().collect();
        await_members(&mut refs, 4);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let burners: Vec<_> = (0..cores)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    eprintln!("  5 idle nodes, {cores} busy threads, for {idle:?}");
    std::thread::sleep(idle);
    stop.store(true, Ordering::Relaxed);
    for b in burners {
        let _ = b.join();
    }
    let mut downs = 0usize;
    let mut worst_gap = 0u64;
    for p in &mut nodes {
        let answer = p.ask("events");
        downs += answer["events"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|e| e["event"] == "down").count());
        let members = p.ask("members");
        for peer in members["peers"].as_array().into_iter().flatten() {
            worst_gap = worst_gap.max(peer["max_gap_ms"].as_u64().unwrap_or(0));
        }
    }
    r.record("false_downs", downs as f64, "events", None);
    r.record("idle_secs", idle.as_secs_f64(), "s", None);
    r.record("worst_heartbeat_gap_ms", worst_gap as f64, "ms", None);
}
