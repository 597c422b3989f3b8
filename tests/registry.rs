//! `Registry` across real node processes on loopback: a name registered on one node called
//! from another, gone from the survivors once its node is SIGKILLed, one winner for a name
//! claimed on two nodes (the loser stopped), a joining node that misses no name, and casts
//! and calls through the holding node's endpoint that reach only the claim they were for.
//!
//! The nodes are this test binary re-executed (ractor's registries are global to a process),
//! running the registry example's node role (`examples/registry/node.rs`). Every wait is a
//! node-side wait with a deadline, or a test-side loop with one.

#[path = "../examples/registry/node.rs"]
#[allow(dead_code)]
mod node;
#[path = "../examples/common/proc.rs"]
#[allow(dead_code)]
mod proc;

use proc::Proc;
use serde_json::json;
use std::time::{Duration, Instant};

const ROLE: &str = "HERD_REGISTRY_TEST_NODE";
const WAIT: Duration = Duration::from_secs(30);
/// The failure detector's default `down_after`, plus a margin for a loaded machine.
const GONE_WITHIN: Duration = Duration::from_millis(1500 + 1500);

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

fn spawn(name: &str, seed: Option<&str>, early: Option<&str>) -> Proc {
    let mut cmd = proc::node_command(ROLE, name, seed);
    cmd.args(proc::TEST_ROLE_ARGS);
    if let Some(early) = early {
        cmd.env("HERD_REGISTRY_EARLY", early);
    }
    Proc::spawn(name, cmd, WAIT)
}

fn ms() -> u128 {
    WAIT.as_millis()
}

#[test]
fn a_name_is_called_across_nodes_and_leaves_when_its_node_is_killed() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let mut a = spawn("a", None, None);
    let mut b = spawn("b", Some(&a.listen), None);
    let mut c = spawn("c", Some(&a.listen), None);
    assert_eq!(
        b.value("register svc- 3"),
        json!({"registered": 3, "already": 0})
    );
    a.value(&format!("count svc- 3 {}", ms()));
    c.value(&format!("count svc- 3 {}", ms()));
    assert_eq!(a.value("where svc-1"), json!({"svc-1": "b"}));
    assert_eq!(
        a.value(&format!("call svc-1 {}", ms())),
        json!("hello from b")
    );
    assert_eq!(
        c.value(&format!("call svc-2 {}", ms())),
        json!("hello from b")
    );
    // Local lookups on the owner.
    assert_eq!(
        b.value(&format!("call svc-0 {}", ms())),
        json!("hello from b")
    );
    let killed = Instant::now();
    b.kill();
    a.value(&format!("count svc- 0 {}", ms()));
    c.value(&format!("count svc- 0 {}", ms()));
    let took = killed.elapsed();
    assert!(
        took <= GONE_WITHIN,
        "names gone {took:?} after the kill, more than {GONE_WITHIN:?}"
    );
    assert!(a.ask("call svc-1 100").starts_with("ERR"));
}

/// Messages to a remote name go through its node's registry endpoint: casts arrive in
/// order; a handle kept from before the name was registered again reaches nobody (an error
/// answer, not the new actor and not a hang), while a fresh lookup reaches the new actor.
#[test]
fn casts_and_calls_reach_only_the_claim_they_were_looked_up_for() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let mut a = spawn("a", None, None);
    let mut b = spawn("b", Some(&a.listen), None);
    assert_eq!(
        b.value("register svc 1"),
        json!({"registered": 1, "already": 0})
    );
    a.value(&format!("count svc 1 {}", ms()));
    for text in ["one", "two", "three"] {
        assert_eq!(a.ask(&format!("cast svc {text}")), "OK");
    }
    let end = Instant::now() + WAIT;
    loop {
        let heard = b.value("heard svc");
        if heard == json!(["one", "two", "three"]) {
            break;
        }
        assert!(Instant::now() < end, "b's actor heard {heard}");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(a.ask(&format!("keep svc {}", ms())), "OK");
    assert_eq!(
        a.value(&format!("call-kept svc {}", ms())),
        json!("hello from b")
    );
    // The actor stops and a new one takes the name: a new claim.
    assert_eq!(b.ask("stop svc"), "OK");
    a.value(&format!("count svc 0 {}", ms()));
    assert_eq!(
        b.value("register svc 1"),
        json!({"registered": 1, "already": 0})
    );
    a.value(&format!("count svc 1 {}", ms()));
    let stale = a.ask(&format!("call-kept svc {}", ms()));
    assert!(stale.starts_with("ERR"), "a stale handle answered {stale}");
    assert_eq!(
        a.value(&format!("call svc {}", ms())),
        json!("hello from b")
    );
    assert_eq!(
        b.value("heard svc"),
        json!([]),
        "the new actor heard nothing old"
    );
}

#[test]
fn one_name_claimed_on_two_nodes_has_one_winner_and_the_loser_stops() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let mut a = spawn("a", None, None);
    assert_eq!(
        a.value("register leader 1"),
        json!({"registered": 1, "already": 0})
    );
    // d claims `leader` before it has synced with anyone: a later, concurrent claim.
    let mut d = spawn("d", Some(&a.listen), Some("leader"));
    let end = Instant::now() + WAIT;
    while d.value("alive leader") == json!(true) {
        assert!(Instant::now() < end, "d's losing actor still runs");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Both views settle on the older claim (d's own view may lag its loss by a message).
    for p in [&mut a, &mut d] {
        let end = Instant::now() + WAIT;
        loop {
            let at = p.value("where leader");
            if at == json!({"leader": "a"}) {
                break;
            }
            assert!(Instant::now() < end, "holder of leader: {at}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert_eq!(a.value("alive leader"), json!(true), "the winner runs");
    assert_eq!(
        d.value("events")["conflicts"],
        json!(1),
        "the loser was told once"
    );
    assert_eq!(
        a.value("events")["conflicts"],
        json!(0),
        "the winner was not"
    );
    assert_eq!(
        d.value(&format!("call leader {}", ms())),
        json!("hello from a")
    );
    // Still one holder a little later (no flapping).
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(d.value("where leader"), json!({"leader": "a"}));
    assert_eq!(d.value("events")["conflicts"], json!(1));
}

/// Horde #247: a node that joins answers every name registered before the join began, from
/// the moment its registry has started.
#[test]
fn a_joining_node_misses_no_name_registered_before_it_joined() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let mut a = spawn("a", None, None);
    let mut b = spawn("b", Some(&a.listen), None);
    a.value("register a- 500");
    b.value("register b- 500");
    for p in [&mut a, &mut b] {
        p.value(&format!("count a- 500 {}", ms()));
        p.value(&format!("count b- 500 {}", ms()));
    }
    // c is seeded with a only; b's names must be there too as soon as c is READY.
    let mut c = spawn("c", Some(&a.listen), None);
    let at = c.value("where");
    let shown = at.as_object().map_or(0, |m| m.len());
    assert_eq!(shown, 1000, "c missed names right after it started");
}
