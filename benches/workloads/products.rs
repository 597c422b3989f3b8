//! Product workloads (`-- products`) over three node processes on loopback: this bench binary
//! re-executed as the distributed-config example's node role (an `Agent<Config>`, sync
//! interval 20 ms).
//!
//! * `products-agent`: 1,000 updates of one field on node a, each awaited; for each, the time
//!   from a's acknowledgement until b and c report it (p50, p99; goal: p99 at most the sync
//!   interval plus 20 ms). Then all three nodes update different fields concurrently (300
//!   updates each); lost updates at the end, on every node (goal 0).

#[path = "../../examples/distributed_config/node.rs"]
#[allow(dead_code, unreachable_pub)]
mod node;
#[path = "../../examples/presence/node.rs"]
#[allow(dead_code, unreachable_pub)]
mod presence_node;
#[path = "../../examples/common/proc.rs"]
#[allow(dead_code, unreachable_pub)]
pub(crate) mod proc;

use crate::report::Report;
use std::time::{Duration, Instant};

const ROLE: &str = "HERD_BENCH_AGENT_NODE";
const PRESENCE_ROLE: &str = "HERD_BENCH_PRESENCE_NODE";
const WAIT: Duration = Duration::from_secs(60);
const SYNC_MS: f64 = 20.0;

/// Runs a node role and exits, when this process was started as one.
pub(crate) fn run_role_if_child() {
    let presence = proc::run_node_role(PRESENCE_ROLE, |name, seed| async move {
        presence_node::run(&name, seed.as_deref())
            .await
            .map_err(|e| format!("{name}: {e}"))
    });
    let ran = presence.or_else(|| {
        proc::run_node_role(ROLE, |name, seed| async move {
            node::run(&name, seed.as_deref(), false)
                .await
                .map_err(|e| format!("{name}: {e}"))
        })
    });
    if let Some(result) = ran {
        proc::exit_with(result);
    }
}

/// Starts one agent node: this bench binary re-executed in the node role.
fn agent_node(name: &str, seed: Option<&str>) -> proc::Proc {
    proc::Proc::spawn(name, proc::node_command(ROLE, name, seed), WAIT)
}

/// The change lines a node printed so far: (arrival, value).
fn changes(p: &mut proc::Proc) -> Vec<(Instant, serde_json::Value)> {
    p.drain()
        .into_iter()
        .filter_map(|(at, line)| {
            let (_, json) = line.strip_prefix("CHANGED ")?.split_once(' ')?;
            Some((at, serde_json::from_str(json).ok()?))
        })
        .collect()
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) fn agent(r: &mut Report) {
    const UPDATES: u64 = 1_000;
    let mut a = agent_node("a", None);
    let mut b = agent_node("b", Some(&a.listen));
    let mut c = agent_node("c", Some(&a.listen));
    // Connected: a first change reaches both.
    a.ask("set maintenance true");
    for p in [&mut b, &mut c] {
        p.ask(&format!("wait maintenance true {}", WAIT.as_millis()));
        changes(p);
    }

    let mut acked = Vec::new();
    let started = Instant::now();
    for i in 1..=UPDATES {
        a.send(&format!("set limits.max_conns {i}"));
        // The answer's arrival is the acknowledgement time.
        let (at, answer) = a.next(|l| l == "OK" || l.starts_with("ERR "));
        assert_eq!(answer, "OK");
        acked.push(at);
    }
    eprintln!(
        "agent: {UPDATES} awaited updates in {:?}",
        started.elapsed()
    );
    let mut lags = Vec::new();
    for p in [&mut b, &mut c] {
        // Collect change lines until the last update shows. (Not with a `wait` command: its
        // answer is read with `Proc::next`, which skips every other line, and the skipped
        // change lines then counted as arriving when they were looked for.)
        let mut changes_seen: Vec<(Instant, serde_json::Value)> = Vec::new();
        let end = Instant::now() + WAIT;
        while !changes_seen
            .iter()
            .any(|(_, v)| v["limits"]["max_conns"].as_u64() == Some(UPDATES))
        {
            assert!(
                Instant::now() < end,
                "{}: update {UPDATES} not seen",
                p.name
            );
            std::thread::sleep(Duration::from_millis(5));
            changes_seen.extend(changes(p));
        }
        let changes = changes_seen;
        // Update i is visible at the first change showing max_conns >= i.
        let mut k = 0;
        for (i, sent) in acked.iter().enumerate() {
            let want = i as u64 + 1;
            while k < changes.len()
                && changes[k].1["limits"]["max_conns"].as_u64().unwrap_or(0) < want
            {
                k += 1;
            }
            let Some((seen, _)) = changes.get(k) else {
                panic!("{}: update {want} never shown", p.name);
            };
            lags.push(seen.saturating_duration_since(*sent).as_secs_f64() * 1e3);
        }
    }
    lags.sort_by(f64::total_cmp);
    r.record("update_visible_p50", quantile(&lags, 0.5), "ms", None);
    r.record(
        "update_visible_p99",
        quantile(&lags, 0.99),
        "ms",
        Some(SYNC_MS + 20.0),
    );

    // Concurrent updates of different fields from all three nodes.
    const EACH: u64 = 300;
    for i in 1..=EACH {
        a.send(&format!("set limits.max_conns {}", UPDATES + i));
        b.send(&format!("set limits.timeout_ms {i}"));
        c.send(&format!("set features.c{i} true"));
    }
    for p in [&mut a, &mut b, &mut c] {
        for _ in 0..EACH {
            let (_, answer) = p.next(|l| l == "OK" || l.starts_with("ERR "));
            assert_eq!(answer, "OK");
        }
    }
    let mut lost = 0u64;
    for p in [&mut a, &mut b, &mut c] {
        p.ask(&format!(
            "wait limits.max_conns {} {}",
            UPDATES + EACH,
            WAIT.as_millis()
        ));
        p.ask(&format!(
            "wait limits.timeout_ms {EACH} {}",
            WAIT.as_millis()
        ));
        let v = p.ask(&format!("wait features.c{EACH} true {}", WAIT.as_millis()));
        let v: serde_json::Value =
            serde_json::from_str(v.strip_prefix("VALUE ").unwrap_or("null")).unwrap_or_default();
        lost += (1..=EACH)
            .filter(|i| v["features"][format!("c{i}")] != true)
            .count() as u64;
    }
    r.record(
        "concurrent_field_updates_lost",
        lost as f64,
        "updates",
        Some(0.0),
    );
}

fn presence_node(name: &str, seed: Option<&str>) -> proc::Proc {
    proc::Proc::spawn(
        name,
        proc::node_command(PRESENCE_ROLE, name, seed),
        PRESENCE_WAIT,
    )
}

/// Deadline of one presence step: 100,000 entries can take minutes to spread (see the book).
const PRESENCE_WAIT: Duration = Duration::from_secs(300);

/// `products-presence`: 100,000 entries tracked over three node processes (a third each):
/// tracks per second, time from the last track until every node lists all, heap in use and
/// resident memory per entry on a node that lists them all, time from a SIGKILL of the node
/// holding a third until no survivor lists them, and joins and leaves per entry seen by a
/// survivor.
pub(crate) fn presence(r: &mut Report) {
    let per_node: usize = std::env::var("HERD_PRESENCE_PER_NODE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(33_334);
    let total = 3 * per_node;
    let ms = PRESENCE_WAIT.as_millis();
    let mut a = presence_node("pa", None);
    let mut b = presence_node("pb", Some(&a.listen));
    let mut c = presence_node("pc", Some(&a.listen));
    // Everyone sees everyone before the load starts.
    a.ask("track-bulk warm w 1 m");
    for p in [&mut b, &mut c] {
        p.value(&format!("count warm 1 {ms}"));
    }
    // Memory is taken on b, which then counts no diffs (a does, for the figures below).
    b.ask("no-diffs");
    let heap_empty = b.value("heap").as_f64().unwrap_or(f64::NAN);
    let empty = b.resident_bytes();
    let started = Instant::now();
    a.send(&format!("track-bulk room a {per_node} m"));
    b.send(&format!("track-bulk room b {per_node} m"));
    c.send(&format!("track-bulk room c {per_node} m"));
    for p in [&mut a, &mut b, &mut c] {
        let answer = p.answer();
        assert!(answer.starts_with("VALUE "), "{answer}");
    }
    let last_track = Instant::now();
    r.record(
        "tracks_per_second",
        total as f64 / (last_track - started).as_secs_f64(),
        "tracks/s",
        None,
    );
    for p in [&mut a, &mut b, &mut c] {
        p.value(&format!("count room {total} {ms}"));
    }
    r.record(
        "last_track_to_listed_everywhere",
        last_track.elapsed().as_secs_f64() * 1e3,
        "ms",
        Some(1_000.0),
    );
    // `heap` hands freed pages back first, as the herd node program does every 10 s: the
    // resident set then is what the node holds, not what the allocator kept from the burst.
    let heap = b.value("heap").as_f64().unwrap_or(f64::NAN);
    r.record(
        "heap_per_entry",
        (heap - heap_empty) / total as f64,
        "bytes",
        Some(300.0),
    );
    r.record(
        "rss_per_entry",
        (b.resident_bytes() - empty) / total as f64,
        "bytes",
        Some(300.0),
    );
    let killed = Instant::now();
    c.kill();
    for p in [&mut a, &mut b] {
        p.value(&format!("count room {} {ms}", 2 * per_node));
    }
    r.record(
        "sigkill_to_gone_everywhere",
        killed.elapsed().as_secs_f64() * 1e3,
        "ms",
        None,
    );
    let diffs = a.value("diffs");
    let (mut joins, mut leaves, mut entries) = (0u64, 0u64, 0u64);
    for i in 0..per_node {
        let d = &diffs[format!("room/c{i}")];
        joins += d[0].as_u64().unwrap_or(0);
        leaves += d[1].as_u64().unwrap_or(0);
        entries += 1;
    }
    r.record(
        "joins_per_killed_entry",
        joins as f64 / entries as f64,
        "joins",
        Some(1.0),
    );
    r.record(
        "leaves_per_killed_entry",
        leaves as f64 / entries as f64,
        "leaves",
        Some(1.0),
    );
}
