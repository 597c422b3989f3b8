//! `Agent<T>` across real node processes on loopback: concurrent updates of different fields
//! on two nodes both kept, one winner for the same field, a rolling upgrade (a node with a
//! newer type), and a node killed and restarted empty catching up.
//!
//! The nodes are this test binary re-executed (ractor's registries are global to a process),
//! running the distributed-config example's node role (`examples/distributed_config/node.rs`).
//! Every wait is a node-side `wait` with a deadline.

#[path = "../examples/distributed_config/node.rs"]
#[allow(dead_code)]
mod node;

#[path = "../examples/common/proc.rs"]
#[allow(dead_code)]
mod proc;

use proc::Proc;
use std::time::Duration;

const ROLE: &str = "HERD_AGENT_TEST_NODE";
const WAIT: Duration = Duration::from_secs(30);

/// A node when this binary runs as a child; a no-op in a normal test run.
#[test]
fn child_node_role() {
    let v2 = std::env::var("HERD_AGENT_TEST_V2").is_ok();
    let ran = proc::run_node_role(ROLE, |name, seed| async move {
        node::run(&name, seed.as_deref(), v2)
            .await
            .map_err(|e| format!("{name}: {e}"))
    });
    if let Some(Err(e)) = ran {
        panic!("{e}");
    }
}

fn spawn(name: &str, seed: Option<&str>, v2: bool) -> Proc {
    let mut cmd = proc::node_command(ROLE, name, seed);
    cmd.args(proc::TEST_ROLE_ARGS);
    if v2 {
        cmd.env("HERD_AGENT_TEST_V2", "1");
    }
    Proc::spawn(name, cmd, WAIT)
}

/// Waits (node side, with a deadline) until `field` holds `json`; returns the value.
fn wait(p: &mut Proc, field: &str, json: &str) -> serde_json::Value {
    p.value(&format!("wait {field} {json} {}", WAIT.as_millis()))
}

#[test]
fn concurrent_field_updates_on_two_nodes_both_survive() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let mut a = spawn("a", None, false);
    let mut b = spawn("b", Some(&a.listen), false);
    // Both connected: a change on each side reaches the other.
    a.ask("set features.a true");
    wait(&mut b, "features.a", "true");
    // At the same moment, different fields; then the same field on both.
    a.send("set limits.max_conns 500");
    b.send("set limits.timeout_ms 250");
    assert_eq!(a.answer(), "OK");
    assert_eq!(b.answer(), "OK");
    for p in [&mut a, &mut b] {
        wait(p, "limits.max_conns", "500");
        wait(p, "limits.timeout_ms", "250");
    }
    a.send("set maintenance true");
    b.send("set maintenance false");
    assert_eq!(a.answer(), "OK");
    assert_eq!(b.answer(), "OK");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (va, vb) = (a.value("get"), b.value("get"));
        if va == vb {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{va} / {vb}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_rolling_upgrade_keeps_the_new_field_and_a_killed_node_catches_up() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let mut old = spawn("old", None, false);
    let mut new = spawn("new", Some(&old.listen), true);
    assert_eq!(new.ask(r#"set region "eu""#), "OK");
    // The old node updates after the new field reached it: it must not erase it.
    old.ask("set features.region_seen true");
    wait(&mut new, "features.region_seen", "true");
    old.ask("set limits.max_conns 77");
    let v = wait(&mut new, "limits.max_conns", "77");
    assert_eq!(v["region"], "eu", "{v}");
    // The old node's view has no such field; after a SIGKILL and a restart with an empty
    // store it catches up, and still does not erase it.
    let v = old.value("get");
    assert!(v.get("region").is_none(), "{v}");
    drop(old);
    let mut old = spawn("old2", Some(&new.listen), false);
    wait(&mut old, "limits.max_conns", "77");
    old.ask("set maintenance true");
    let v = wait(&mut new, "maintenance", "true");
    assert_eq!(v["region"], "eu", "{v}");
}
