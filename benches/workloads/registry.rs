//! `products-registry`: the registry over three node processes on loopback (this bench
//! binary re-executed as the registry example's node role, sync interval 20 ms).
//!
//! `HERD_REGISTRY_NAMES` names (default 30,000; the figure is 100,000) are registered,
//! a third on each node, concurrently; each is an actor of its own, published through the
//! cluster layer. Figures: registrations per second (all three nodes together); time from the
//! last registration's acknowledgement until every node shows all of them (goal ≤ 1 s); p50
//! and p99 of a local lookup (goal p99 ≤ 5 µs) and of a lookup plus call of an actor on another
//! node; then node c is SIGKILLed: time until no survivor shows its names (goal ≤ the failure
//! detector's 1.5 s + 200 ms) and names lost from the survivors (goal 0); then, on three fresh
//! nodes, heap in use and resident memory per name (goal 300 B; see [`memory`]). Also
//! `sessions_reestablished`: authenticated sessions opened during the registrations and the
//! convergence, all nodes together (goal 0; more means false Downs and reconnects, and each
//! node's session counters and Downs by reason are printed when convergence fails).

#[path = "../../examples/registry/node.rs"]
#[allow(dead_code, unreachable_pub)]
mod node;

use crate::products::proc::{self, Proc};
use crate::report::Report;
use std::time::{Duration, Instant};

const ROLE: &str = "HERD_BENCH_REGISTRY_NODE";
const WAIT: Duration = Duration::from_secs(120);

/// Runs the node role and exits, when this process was started as one.
pub(crate) fn run_role_if_child() {
    let ran = proc::run_node_role(ROLE, |name, seed| async move {
        node::run(&name, seed.as_deref())
            .await
            .map_err(|e| format!("{name}: {e}"))
    });
    if let Some(result) = ran {
        proc::exit_with(result);
    }
}

fn spawn(name: &str, seed: Option<&str>) -> Proc {
    Proc::spawn(name, proc::node_command(ROLE, name, seed), WAIT)
}

/// Authenticated sessions so far, all nodes together.
fn sessions_authenticated(nodes: &mut [&mut Proc]) -> u64 {
    nodes
        .iter_mut()
        .map(|p| {
            p.value("cluster")["sessions_authenticated"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum()
}

fn ns(v: &serde_json::Value, field: &str) -> f64 {
    v[field].as_f64().unwrap_or(f64::NAN)
}

pub(crate) fn registry(r: &mut Report) {
    let total: usize = std::env::var("HERD_REGISTRY_NAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    let per = total / 3;
    let total = per * 3;
    let [mut a, mut b, mut c] = three("");
    let ms = WAIT.as_millis();

    let sessions_before = sessions_authenticated(&mut [&mut a, &mut b, &mut c]);
    let started = Instant::now();
    for (p, prefix) in [(&mut a, "na-"), (&mut b, "nb-"), (&mut c, "nc-")] {
        p.send(&format!("register {prefix} {per}"));
    }
    let mut last_ack = started;
    for p in [&mut a, &mut b, &mut c] {
        let (at, line) = p.next(|l| l.starts_with("VALUE ") || l.starts_with("ERR "));
        assert!(line.starts_with("VALUE "), "{}: {line}", p.name);
        last_ack = last_ack.max(at);
    }
    let took = last_ack - started;
    eprintln!("registry: {total} names registered in {took:?}");
    r.record(
        "registrations_per_s",
        total as f64 / took.as_secs_f64(),
        "names/s",
        None,
    );
    for p in [&mut a, &mut b, &mut c] {
        // The node gives up before the harness does, so its answer says how far it got.
        p.send(&format!("count n {total} {}", ms - 10_000));
    }
    let mut all_shown = last_ack;
    let mut short = Vec::new();
    for p in [&mut a, &mut b, &mut c] {
        let (at, line) = p.next(|l| l.starts_with("VALUE ") || l.starts_with("ERR "));
        if !line.starts_with("VALUE ") {
            short.push(format!("{}: {line}", p.name));
        }
        all_shown = all_shown.max(at);
    }
    // Each node holds one session per peer: more authenticated sessions than at the start
    // means sessions were lost and re-established during the run (false downs).
    let sessions = sessions_authenticated(&mut [&mut a, &mut b, &mut c]);
    r.record(
        "sessions_reestablished",
        sessions.saturating_sub(sessions_before) as f64,
        "sessions",
        Some(0.0),
    );
    if !short.is_empty() || sessions > sessions_before {
        for p in [&mut a, &mut b, &mut c] {
            let stats = p.value("cluster");
            eprintln!("{}: {stats}", p.name);
        }
    }
    assert!(
        short.is_empty(),
        "not every name shown everywhere ({} sessions re-established): {short:?}",
        sessions.saturating_sub(sessions_before)
    );
    r.record(
        "all_resolve_after_last_ms",
        (all_shown - last_ack).as_secs_f64() * 1e3,
        "ms",
        Some(1000.0),
    );

    let local = a.value("lookups na-");
    r.record("local_lookup_p50", ns(&local, "p50_ns") / 1e3, "µs", None);
    r.record(
        "local_lookup_p99",
        ns(&local, "p99_ns") / 1e3,
        "µs",
        Some(5.0),
    );
    let remote = a.value("calls nb- 1000");
    r.record("remote_call_p50", ns(&remote, "p50_ns") / 1e3, "µs", None);
    r.record("remote_call_p99", ns(&remote, "p99_ns") / 1e3, "µs", None);

    let killed = Instant::now();
    c.kill();
    for p in [&mut a, &mut b] {
        p.send(&format!("count nc- 0 {ms}"));
    }
    let mut gone = killed;
    for p in [&mut a, &mut b] {
        let (at, line) = p.next(|l| l.starts_with("VALUE ") || l.starts_with("ERR "));
        assert!(line.starts_with("VALUE "), "{}: {line}", p.name);
        gone = gone.max(at);
    }
    r.record(
        "killed_names_gone_ms",
        (gone - killed).as_secs_f64() * 1e3,
        "ms",
        Some(1700.0),
    );
    let mut lost = 0;
    for p in [&mut a, &mut b] {
        for prefix in ["na-", "nb-"] {
            let shown = p.value(&format!("where {prefix}"));
            lost += per - shown.as_object().map_or(0, |m| m.len());
        }
    }
    r.record("names_lost_from_survivors", lost as f64, "names", Some(0.0));
    drop((a, b, c));
    memory(r, total);
}

/// Nodes `<prefix>a`, `<prefix>b` and `<prefix>c`, once the three see each other (one name
/// each, shown everywhere).
fn three(prefix: &str) -> [Proc; 3] {
    let a = spawn(&format!("{prefix}a"), None);
    let b = spawn(&format!("{prefix}b"), Some(&a.listen));
    let c = spawn(&format!("{prefix}c"), Some(&a.listen));
    let mut nodes = [a, b, c];
    for (p, n) in nodes.iter_mut().zip(["wa", "wb", "wc"]) {
        p.value(&format!("register {n} 1"));
    }
    for p in &mut nodes {
        p.value(&format!("count w 3 {}", WAIT.as_millis()));
    }
    nodes
}

/// Memory per name, on three fresh nodes: each registers a third of `total` names bound to
/// one actor (`register-bulk`: an actor per name would weigh more than its name), and node
/// b's heap in use and resident set (after handing freed pages back) are taken before and
/// once it shows them all.
fn memory(r: &mut Report, total: usize) {
    let per = total / 3;
    let [mut a, mut b, mut c] = three("m");
    let ms = WAIT.as_millis();
    let heap_empty = b.value("heap").as_f64().unwrap_or(f64::NAN);
    let empty = b.resident_bytes();
    for (p, prefix) in [(&mut a, "ma-"), (&mut b, "mb-"), (&mut c, "mc-")] {
        p.send(&format!("register-bulk {prefix} {per}"));
    }
    for p in [&mut a, &mut b, &mut c] {
        let answer = p.answer();
        assert_eq!(answer, "OK", "{}", p.name);
    }
    b.value(&format!("count m {} {ms}", 3 * per));
    let heap = b.value("heap").as_f64().unwrap_or(f64::NAN);
    let names = (3 * per) as f64;
    r.record(
        "heap_per_name",
        (heap - heap_empty) / names,
        "bytes",
        Some(300.0),
    );
    r.record(
        "rss_per_name",
        (b.resident_bytes() - empty) / names,
        "bytes",
        Some(300.0),
    );
}
