//! `Supervisor` across real node processes on loopback: children run exactly once over three
//! nodes, run again on the survivors when their node is SIGKILLed, never multiply or vanish
//! over rounds of a graceful leave and a rejoin (Horde #207), a child that cannot start is
//! marked failed once, and a quorum supervisor that loses its majority stops its children.
//!
//! The nodes are this test binary re-executed (ractor's registries are global to a process),
//! running the supervisor example's node role (`examples/supervisor/node.rs`). "Exactly once"
//! is checked twice: by the supervisor's own view on every node, and by an independent
//! census — each worker actor counts itself in its process while it runs. Every wait is a
//! node-side wait with a deadline, or a test-side loop with one.

#[path = "../examples/supervisor/node.rs"]
#[allow(dead_code)]
mod node;
#[path = "../examples/common/proc.rs"]
#[allow(dead_code)]
mod proc;

use proc::Proc;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const ROLE: &str = "HERD_SUP_TEST_NODE";
const WAIT: Duration = Duration::from_secs(30);
/// The failure detector's default `down_after` (1.5 s), plus a margin for a loaded machine.
const FAILOVER_WITHIN: Duration = Duration::from_millis(1500 + 2500);

/// A node when this binary runs as a child; a no-op in a normal test run.
#[test]
fn child_node_role() {
    let ran = proc::run_node_role(ROLE, |name, seed| async move {
        node::run(&name, seed.as_deref())
            .await
            .map_err(|e| format!("{name}: {e}"))
    });
    if let Some(Err(e)) = ran {
        panic!("{e}");
    }
}

fn spawn(name: &str, seed: Option<&str>, quorum: Option<usize>) -> Proc {
    let mut cmd = proc::node_command(ROLE, name, seed);
    cmd.args(proc::TEST_ROLE_ARGS);
    if let Some(n) = quorum {
        cmd.env("HERD_SUP_QUORUM", n.to_string());
    }
    Proc::spawn(name, cmd, WAIT)
}

fn ms() -> u128 {
    WAIT.as_millis()
}

/// The census of these nodes together: id -> copies alive.
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

/// Waits until the census shows exactly the ids `prefix0..prefix{n-1}`, each alive once.
fn census_exactly_once(nodes: &mut [&mut Proc], prefix: &str, n: usize, what: &str) {
    let want: BTreeMap<String, u64> = (0..n).map(|i| (format!("{prefix}{i}"), 1)).collect();
    let end = Instant::now() + WAIT;
    loop {
        let now = census(nodes);
        if now == want {
            return;
        }
        let dups: Vec<_> = now.iter().filter(|(_, c)| **c > 1).collect();
        let missing = want.keys().filter(|k| !now.contains_key(*k)).count();
        assert!(
            Instant::now() < end,
            "{what}: census not exactly once: {missing} missing, duplicates {dups:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_running(p: &mut Proc, n: usize) -> Value {
    p.value(&format!("wait {n} {}", ms()))
}

#[test]
fn children_run_once_and_a_killed_nodes_children_run_again_on_the_survivors() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    const N: usize = 30;
    let mut a = spawn("a", None, None);
    let mut b = spawn("b", Some(&a.listen), None);
    let mut c = spawn("c", Some(&a.listen), None);
    assert_eq!(
        a.value(&format!("start job- {N}")),
        json!({"started": N, "already": 0})
    );
    // A second start of the same ids, from another node, writes nothing.
    wait_running(&mut b, N);
    assert_eq!(
        b.value(&format!("start job- {N}")),
        json!({"started": 0, "already": N})
    );
    for p in [&mut a, &mut b, &mut c] {
        wait_running(p, N);
    }
    census_exactly_once(&mut [&mut a, &mut b, &mut c], "job-", N, "three nodes");
    let on_c = c.value("census").as_object().map_or(0, |m| m.len());
    assert!(on_c > 0, "rendezvous placed nothing on c");
    let placed = a.value("where job-");
    for p in [&mut b, &mut c] {
        assert_eq!(
            p.value("where job-"),
            placed,
            "every node sees the same places"
        );
    }
    // Any node reaches any child.
    let (id, host) = placed
        .as_object()
        .and_then(|m| m.iter().find(|(_, n)| *n == "c"))
        .map(|(id, n)| (id.clone(), n.clone()))
        .expect("a child on c");
    assert_eq!(a.value(&format!("call {id} {}", ms())), host);

    let killed = Instant::now();
    c.kill();
    for p in [&mut a, &mut b] {
        p.value(&format!("settled {N} a,b {}", ms()));
    }
    let took = killed.elapsed();
    census_exactly_once(&mut [&mut a, &mut b], "job-", N, "after the kill");
    assert!(
        took <= FAILOVER_WITHIN,
        "c's {on_c} children ran again {took:?} after the kill, more than {FAILOVER_WITHIN:?}"
    );
    assert_eq!(a.value("where job-"), b.value("where job-"));
}

/// Horde #207: a node that leaves gracefully and rejoins, round after round, never
/// multiplies a child and never loses one.
#[test]
fn leave_and_rejoin_rounds_keep_every_child_exactly_once() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    const N: usize = 30;
    const ROUNDS: usize = 5;
    let mut a = spawn("a", None, None);
    let mut b = spawn("b", Some(&a.listen), None);
    let mut c = spawn("c", Some(&a.listen), None);
    a.value(&format!("start r- {N}"));
    for p in [&mut a, &mut b, &mut c] {
        wait_running(p, N);
    }
    census_exactly_once(&mut [&mut a, &mut b, &mut c], "r-", N, "start");
    for round in 1..=ROUNDS {
        b.send("leave");
        let left = b.answer();
        assert_eq!(
            left,
            format!("VALUE {}", json!({"stragglers": 0})),
            "round {round}: b's handover"
        );
        for p in [&mut a, &mut c] {
            p.value(&format!("settled {N} a,c {}", ms()));
        }
        census_exactly_once(
            &mut [&mut a, &mut c],
            "r-",
            N,
            &format!("round {round}, b gone"),
        );
        b = spawn("b", Some(&a.listen), None);
        // b's share is handed back to it (Active redistribution).
        let end = Instant::now() + WAIT;
        while census(&mut [&mut b]).is_empty() {
            assert!(
                Instant::now() < end,
                "round {round}: nothing handed back to b"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        for p in [&mut a, &mut b, &mut c] {
            wait_running(p, N);
        }
        census_exactly_once(
            &mut [&mut a, &mut b, &mut c],
            "r-",
            N,
            &format!("round {round}, b back"),
        );
    }
}

/// A child that fails every start is restarted up to the intensity limit on the one node
/// that owns it, then marked failed — once, the same on every node — and not migrated.
#[test]
fn a_child_that_cannot_start_is_failed_once() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let mut a = spawn("a", None, None);
    let mut b = spawn("b", Some(&a.listen), None);
    a.value("start ok- 4");
    for p in [&mut a, &mut b] {
        wait_running(p, 4);
    }
    a.value("start bad 1 crash");
    for p in [&mut a, &mut b] {
        let end = Instant::now() + WAIT;
        while p.value("where bad") != json!({"bad": "failed"}) {
            assert!(Instant::now() < end, "{}: bad not failed", p.name);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for p in [&mut a, &mut b] {
        assert_eq!(
            p.value("counts"),
            json!({"specs": 5, "running": 4, "failed": 1, "pending": 0})
        );
    }
    // Terminating a failed child clears it everywhere.
    assert_eq!(a.ask("terminate bad"), "OK");
    for p in [&mut a, &mut b] {
        wait_running(p, 4);
        let end = Instant::now() + WAIT;
        while p.value("counts")["specs"] != json!(4) {
            assert!(Instant::now() < end, "{}: bad still listed", p.name);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Quorum over a static count (Horde #45): a node left alone out of three stops its
/// children and refuses new ones.
#[test]
fn a_quorum_supervisor_without_a_majority_stops_its_children() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let mut a = spawn("a", None, Some(3));
    let mut b = spawn("b", Some(&a.listen), Some(3));
    let mut c = spawn("c", Some(&a.listen), Some(3));
    a.value("start q- 12");
    for p in [&mut a, &mut b, &mut c] {
        wait_running(p, 12);
    }
    census_exactly_once(&mut [&mut a, &mut b, &mut c], "q-", 12, "quorum");
    // Killing one keeps the majority: its children move.
    c.kill();
    for p in [&mut a, &mut b] {
        p.value(&format!("settled 12 a,b {}", ms()));
    }
    census_exactly_once(&mut [&mut a, &mut b], "q-", 12, "two of three");
    // Killing a second leaves a alone: no majority, nothing runs, nothing starts.
    b.kill();
    let end = Instant::now() + WAIT;
    while !census(&mut [&mut a]).is_empty() {
        assert!(Instant::now() < end, "a still runs children without quorum");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(a.ask("start q-new 1").contains("no quorum"));
}
