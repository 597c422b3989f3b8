//! `products-supervisor`: the distributed DynamicSupervisor over three node processes on
//! loopback (this bench binary re-executed as the supervisor example's node role, sync
//! interval 20 ms, reconcile tick 200 ms).
//!
//! * `HERD_SUP_CHILDREN` children (default 10,000) are asked for on node a, one
//!   `start_child` each, awaited in turn: `start_child` calls per second, and the time from
//!   the first call until every node sees all of them running (and none pending).
//! * Node c is SIGKILLed: the time until both survivors see every child running on a or b
//!   (goal ≤ the failure detector's 1.5 s + 1 s), then duplicates and missing children by
//!   the independent census (each worker counts itself in its process; goal 0 and 0).
//! * A fresh trio with 50 children: node y leaves gracefully and rejoins, 10 rounds; the
//!   census's count of live workers after each round (goal exactly 50 every round), and the
//!   handover stragglers (goal 0).

#[path = "../../examples/supervisor/node.rs"]
#[allow(dead_code, unreachable_pub)]
mod node;

use crate::products::proc::{self, Proc};
use crate::report::Report;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const ROLE: &str = "HERD_BENCH_SUP_NODE";
const WAIT: Duration = Duration::from_secs(300);
const ROUNDS: usize = 10;
const ROUND_CHILDREN: usize = 50;

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

/// The census of these nodes together: id -> live copies.
fn census(nodes: &mut [&mut Proc]) -> BTreeMap<String, u64> {
    let mut all = BTreeMap::new();
    for p in nodes.iter_mut() {
        let c = p.value("census");
        for (id, n) in c.as_object().into_iter().flatten() {
            *all.entry(id.clone()).or_insert(0) += n.as_u64().unwrap_or(0);
        }
    }
    all
}

/// Sends `command` to every node, then waits for every answer; the latest arrival.
fn all_answer(nodes: &mut [&mut Proc], command: &str) -> Instant {
    for p in nodes.iter_mut() {
        p.send(command);
    }
    let mut last = Instant::now();
    for p in nodes.iter_mut() {
        let (at, line) = p.next(|l| l.starts_with("VALUE ") || l.starts_with("ERR "));
        assert!(line.starts_with("VALUE "), "{}: {command}: {line}", p.name);
        last = last.max(at);
    }
    last
}

pub(crate) fn supervisor(r: &mut Report) {
    let total: usize = std::env::var("HERD_SUP_CHILDREN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let ms = WAIT.as_millis();
    let mut a = spawn("a", None);
    let mut b = spawn("b", Some(&a.listen));
    let mut c = spawn("c", Some(&a.listen));
    // The three see each other: one child, running everywhere.
    a.value("start warm 1");
    all_answer(
        &mut [&mut a, &mut b, &mut c],
        &format!("settled 1 a,b,c {ms}"),
    );
    a.ask("terminate warm");
    all_answer(&mut [&mut a, &mut b, &mut c], &format!("wait 0 {ms}"));

    r.record("children", total as f64, "children", None);
    let started = Instant::now();
    a.send(&format!("start job- {total}"));
    let (acked, line) = a.next(|l| l.starts_with("VALUE ") || l.starts_with("ERR "));
    assert!(line.starts_with("VALUE "), "a: {line}");
    r.record(
        "start_child_per_s",
        total as f64 / (acked - started).as_secs_f64(),
        "calls/s",
        None,
    );
    let all_run = all_answer(
        &mut [&mut a, &mut b, &mut c],
        &format!("settled {total} a,b,c {ms}"),
    );
    r.record(
        "all_running_after_first_call_ms",
        (all_run - started).as_secs_f64() * 1e3,
        "ms",
        None,
    );
    let on_c = c.value("census").as_object().map_or(0, |m| m.len());
    r.record("children_on_killed_node", on_c as f64, "children", None);

    let killed = Instant::now();
    c.kill();
    let back = all_answer(&mut [&mut a, &mut b], &format!("settled {total} a,b {ms}"));
    r.record(
        "failover_all_running_ms",
        (back - killed).as_secs_f64() * 1e3,
        "ms",
        Some(2500.0),
    );
    // The census settles as the survivors' last starts finish; give it the same deadline.
    let end = Instant::now() + WAIT;
    let (duplicates, missing) = loop {
        let now = census(&mut [&mut a, &mut b]);
        let duplicates: u64 = now.values().map(|n| n.saturating_sub(1)).sum();
        let missing = total
            - (0..total)
                .filter(|i| now.contains_key(&format!("job-{i}")))
                .count();
        if (duplicates == 0 && missing == 0) || Instant::now() >= end {
            break (duplicates, missing);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    r.record(
        "duplicates_after_failover",
        duplicates as f64,
        "children",
        Some(0.0),
    );
    r.record(
        "missing_after_failover",
        missing as f64,
        "children",
        Some(0.0),
    );
    drop((a, b));

    rounds(r);
}

/// Horde #207's shape: 50 children, y leaves gracefully and rejoins, 10 rounds.
fn rounds(r: &mut Report) {
    let ms = WAIT.as_millis();
    let mut x = spawn("x", None);
    let mut y = spawn("y", Some(&x.listen));
    let mut z = spawn("z", Some(&x.listen));
    x.value(&format!("start r- {ROUND_CHILDREN}"));
    all_answer(
        &mut [&mut x, &mut y, &mut z],
        &format!("settled {ROUND_CHILDREN} x,y,z {ms}"),
    );
    let (mut exact, mut min, mut max, mut stragglers) = (0, u64::MAX, 0, 0);
    let mut round_ms = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        y.send("leave");
        let left = y.answer();
        stragglers += left
            .strip_prefix("VALUE ")
            .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
            .and_then(|v| v["stragglers"].as_u64())
            .unwrap_or(u64::MAX);
        all_answer(
            &mut [&mut x, &mut z],
            &format!("settled {ROUND_CHILDREN} x,z {ms}"),
        );
        y = spawn("y", Some(&x.listen));
        // Settled: y holds its share again and every node sees all 50 running.
        let end = Instant::now() + WAIT;
        while census(&mut [&mut y]).is_empty() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        all_answer(
            &mut [&mut x, &mut y, &mut z],
            &format!("wait {ROUND_CHILDREN} {ms}"),
        );
        round_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let now = census(&mut [&mut x, &mut y, &mut z]);
        let running: u64 = now.values().sum();
        if running == ROUND_CHILDREN as u64 && now.len() == ROUND_CHILDREN {
            exact += 1;
        }
        min = min.min(running);
        max = max.max(running);
    }
    r.record("rounds", ROUNDS as f64, "rounds", None);
    r.record(
        "rounds_with_exactly_50",
        exact as f64,
        "rounds",
        Some(ROUNDS as f64),
    );
    r.record(
        "round_running_min",
        min as f64,
        "children",
        Some(ROUND_CHILDREN as f64),
    );
    r.record(
        "round_running_max",
        max as f64,
        "children",
        Some(ROUND_CHILDREN as f64),
    );
    r.record(
        "handover_stragglers",
        stragglers as f64,
        "children",
        Some(0.0),
    );
    round_ms.sort_by(f64::total_cmp);
    r.record(
        "round_ms_median",
        round_ms
            .get(round_ms.len() / 2)
            .copied()
            .unwrap_or(f64::NAN),
        "ms",
        None,
    );
}
