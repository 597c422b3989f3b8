//! Presence across real node processes on loopback: a node killed with SIGKILL takes its
//! entries out of every survivor's list, with exactly one join and one leave per entry on
//! each survivor's subscriber; a restarted node's old entries never come back.
//!
//! The nodes are this test binary re-executed, running the presence example's node role
//! (`examples/presence/node.rs`); every wait is node-side, with a deadline.

#[path = "../examples/presence/node.rs"]
#[allow(dead_code)]
mod node;
#[path = "../examples/common/proc.rs"]
#[allow(dead_code)]
mod proc;

use proc::Proc;
use std::time::Duration;

const ROLE: &str = "HERD_PRESENCE_TEST_NODE";
const WAIT: Duration = Duration::from_secs(30);

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

fn spawn(name: &str, seed: Option<&str>) -> Proc {
    let mut cmd = proc::node_command(ROLE, name, seed);
    cmd.args(proc::TEST_ROLE_ARGS);
    Proc::spawn(name, cmd, WAIT)
}

fn count(p: &mut Proc, n: usize) {
    let answer = p.ask(&format!("count room {n} {}", WAIT.as_millis()));
    assert_eq!(answer, format!("VALUE {n}"), "{}", p.name);
}

#[test]
fn a_killed_node_leaves_once_and_a_restarted_one_brings_no_ghosts() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let mut a = spawn("a", None);
    let mut b = spawn("b", Some(&a.listen));
    let mut c = spawn("c", Some(&a.listen));
    assert_eq!(a.ask("track room a- 5 m"), "OK");
    assert_eq!(c.ask("track room old- 20 m"), "OK");
    for p in [&mut a, &mut b, &mut c] {
        count(p, 25);
    }
    // An actor that stops leaves everywhere.
    assert_eq!(a.ask("stop room a-0"), "OK");
    for p in [&mut a, &mut b, &mut c] {
        count(p, 24);
    }

    c.kill();
    for p in [&mut a, &mut b] {
        count(p, 4);
    }
    let mut c = spawn("c", Some(&a.listen));
    assert_eq!(c.ask("track room new- 3 m"), "OK");
    for p in [&mut a, &mut b, &mut c] {
        count(p, 7);
    }
    for p in [&mut a, &mut b] {
        let list = p.value("list room");
        let keys: Vec<&String> = list.as_object().expect("a map").keys().collect();
        assert!(
            keys.iter().all(|k| !k.starts_with("old-")),
            "{}: an entry of c's previous run shows: {keys:?}",
            p.name
        );
        // Exactly one join and one leave per entry of the killed run, one join per new one.
        let diffs = p.value("diffs");
        for i in 0..20 {
            assert_eq!(
                diffs[format!("room/old-{i}")],
                serde_json::json!([1, 1]),
                "{}",
                p.name
            );
        }
        for i in 0..3 {
            assert_eq!(
                diffs[format!("room/new-{i}")],
                serde_json::json!([1, 0]),
                "{}",
                p.name
            );
        }
        assert_eq!(diffs["room/a-0"], serde_json::json!([1, 1]), "{}", p.name);
    }
}
