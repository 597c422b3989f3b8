//! Membership and failure detection across real `herd node` processes on loopback: a hung
//! peer (SIGSTOP) is reported Down on every survivor and Up again after SIGCONT, with its
//! replica repaired; a graceful leave is reported at once and hands its writes over first.
//!
//! Every wait has a deadline (`await-*` commands, `eventually`); the timing goals of the
//! issue (≤ 2 s, ≤ 1 s, ≤ 100 ms) are measured by the `cluster-membership` workload, not
//! asserted here, where 2 shared cores and parallel tests would make them flaky. The tests
//! assert generous bounds instead.

mod support;

use std::time::{Duration, Instant};

use support::{Harness, Node, await_same_root};

fn pair(h: &Harness) -> (Node, Node) {
    let mut a = h.spawn(h.spec("a"));
    let mut b = h.spawn(h.spec("b").seed(a.listen()));
    for n in [&mut a, &mut b] {
        n.await_members(1);
        n.await_neighbours(1);
    }
    (a, b)
}

/// The events `node` recorded about `peer`, as `"up"` / `"down:<reason>"`.
fn history(node: &mut Node, peer: &str) -> Vec<String> {
    node.events()
        .into_iter()
        .filter(|(_, n, _, _)| n == peer)
        .map(|(e, _, r, _)| match r {
            Some(r) => format!("{e}:{r}"),
            None => e,
        })
        .collect()
}

#[test]
fn a_hung_peer_is_reported_down_then_up_and_repaired() {
    let h = Harness::new();
    let mut a = h.spawn(h.spec("a"));
    let mut b = h.spawn(h.spec("b").seed(a.listen()));
    let mut c = h.spawn(h.spec("c").seed(a.listen()));
    for n in [&mut a, &mut b, &mut c] {
        n.await_members(2);
        n.await_neighbours(2);
    }
    // The member list including the node itself is the same everywhere.
    for n in [&mut a, &mut b, &mut c] {
        let answer = n.ok("members");
        assert_eq!(
            answer["cluster_members"],
            serde_json::json!(["a", "b", "c"]),
            "{answer}"
        );
    }
    c.signal("STOP");
    let stopped = Instant::now();
    a.await_state("c", false);
    b.await_state("c", false);
    let detected = stopped.elapsed();
    // The goal is 2 s at defaults (measured by the workload); here only a sanity bound.
    assert!(detected < Duration::from_secs(8), "took {detected:?}");
    // Replicas stop treating it as a neighbour: a write now goes to b only.
    a.await_neighbours(1);
    a.put("while/stopped", "x");
    b.await_key("while/stopped", "x");

    c.signal("CONT");
    a.await_state("c", true);
    b.await_state("c", true);
    c.await_members(2);
    // Repaired as after a reconnect.
    c.await_key("while/stopped", "x");
    await_same_root(&mut [&mut a, &mut b, &mut c]);

    for n in [&mut a, &mut b] {
        assert_eq!(history(n, "c"), ["up", "down:unresponsive", "up"]);
    }
    // The node that was stopped blamed itself, not its peers: no Down for a or b.
    let seen_by_c: Vec<String> = history(&mut c, "a")
        .into_iter()
        .chain(history(&mut c, "b"))
        .collect();
    assert!(
        seen_by_c.iter().all(|e| e == "up"),
        "c saw its peers go down: {seen_by_c:?}"
    );
}

#[test]
fn a_hung_peer_watched_by_one_is_reported_down_on_every_survivor() {
    // One watcher per node: of the three survivors, one watches the stopped node and declares
    // it unresponsive; the other two hear its report, probe the node themselves and find it
    // silent too. Without the report they would never see it go (its sessions stay open).
    let h = Harness::new();
    let spec = |name: &str| h.spec(name).env("HERD_MONITORS", "1");
    let mut a = h.spawn(spec("a"));
    let mut others: Vec<Node> = ["b", "c", "d"]
        .into_iter()
        .map(|n| h.spawn(spec(n).seed(a.listen())))
        .collect();
    a.await_members(3);
    for n in &mut others {
        n.await_members(3);
    }
    let d = others.pop().expect("d");
    d.signal("STOP");
    a.await_state("d", false);
    for n in &mut others {
        n.await_state("d", false);
    }
    d.signal("CONT");
    a.await_state("d", true);
    for n in &mut others {
        n.await_state("d", true);
    }
    for n in std::iter::once(&mut a).chain(&mut others) {
        assert_eq!(history(n, "d"), ["up", "down:unresponsive", "up"]);
    }
    // Nobody else was declared down on the way.
    for n in std::iter::once(&mut a).chain(&mut others) {
        let downs: Vec<(String, String)> = n
            .events()
            .into_iter()
            .filter(|(e, peer, _, _)| e == "down" && peer != "d")
            .map(|(e, peer, _, _)| (e, peer))
            .collect();
        assert!(downs.is_empty(), "{downs:?}");
    }
}

#[test]
fn a_graceful_leave_is_reported_at_once_with_its_reason() {
    let h = Harness::new();
    let (mut a, mut b) = pair(&h);
    b.quit();
    a.await_state("b", false);
    assert_eq!(history(&mut a, "b"), ["up", "down:left"]);
    // A crash is reported as a closed connection, after the reconnect grace period.
    b.restart();
    a.await_state("b", true);
    b.kill();
    a.await_state("b", false);
    assert_eq!(
        history(&mut a, "b"),
        ["up", "down:left", "up", "down:connection_closed"]
    );
    // The answer to `members` shows each peer's state and the detector's figures.
    let members = a.ok("members");
    let peers = members["peers"].as_array().expect("peers");
    assert_eq!(peers[0]["node"], "b");
    assert_eq!(peers[0]["state"], "down");
    assert_eq!(members["cluster_members"], serde_json::json!(["a"]));
}

#[test]
fn a_one_shot_writer_hands_its_write_over_before_leaving() {
    let h = Harness::new();
    let mut a = h.spawn(h.spec("a"));
    // Joins, writes one key and quits at once: before the fix the write stayed on the
    // writer (memory storage here, so it would be gone for good).
    let mut tool = h.spawn(h.spec("tool").seed(a.listen()));
    tool.put("config/x", "42");
    tool.quit();
    let answer = a.request("get config/x");
    assert_eq!(
        answer["value"], "42",
        "the write did not arrive before the writer left"
    );
}

#[test]
fn a_large_sync_does_not_make_the_detector_declare_a_busy_peer_down() {
    let h = Harness::new();
    let mut a = h.spawn(h.spec("a"));
    // ~4 MB to repair into a fresh node: 1 MiB sync messages queue ahead of the heartbeats
    // on the same session. Before sync traffic counted as a sign of life, a joining node was
    // once seen (30,000 keys, debug build) declaring its busy peer unresponsive in the middle
    // of the repair and starting over. A guard, not a reliable reproduction: it passed
    // without the fix in 5 runs here.
    a.bulk_put("big/", 20_000, 200);
    let mut b = h.spawn(h.spec("b").seed(a.listen()));
    b.await_count(20_000);
    for (n, peer) in [(&mut a, "b"), (&mut b, "a")] {
        let downs: Vec<String> = history(n, peer)
            .into_iter()
            .filter(|e| e.starts_with("down"))
            .collect();
        assert!(downs.is_empty(), "{peer} was declared down: {downs:?}");
    }
}
