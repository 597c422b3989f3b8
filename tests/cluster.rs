//! The node program across real processes on loopback: convergence, departures and rejoins,
//! crash recovery from disk, bad frames from a peer, a node with the wrong cookie, and eight
//! nodes joining through one seed.
//!
//! Each test starts its own `herd node` children (free ports, its own temporary directory)
//! and waits on conditions the nodes report (`await-*` commands, polled stats), each with a
//! deadline; nothing sleeps and hopes. On failure the nodes' logs are printed.

mod support;

use std::time::{Duration, Instant};

use support::{Harness, Node, WAIT, await_same_root, eventually, number};

/// Starts `a` and two more nodes seeded with `a`'s address; waits until everyone is
/// everyone's neighbour.
fn three(h: &Harness, disk: bool) -> (Node, Node, Node) {
    let spec = |name: &str| {
        if disk {
            h.disk_spec(name)
        } else {
            h.spec(name)
        }
    };
    let a = h.spawn(spec("a"));
    let b = h.spawn(spec("b").seed(a.listen()));
    let c = h.spawn(spec("c").seed(a.listen()));
    let (mut a, mut b, mut c) = (a, b, c);
    for node in [&mut a, &mut b, &mut c] {
        node.await_members(2);
        node.await_neighbours(2);
    }
    (a, b, c)
}

#[test]
fn three_nodes_converge() {
    let h = Harness::new();
    let (mut a, mut b, mut c) = three(&h, false);
    // Malformed commands get an error answer and the node carries on.
    for bad in [
        "frobnicate",
        "put onlykey",
        "await-count x 10",
        "inject b meteor",
        "",
    ] {
        let answer = a.request(bad);
        assert_eq!(answer["ok"], false, "{bad}: {answer}");
        assert!(answer["error"].is_string(), "{bad}: {answer}");
    }
    assert_eq!(a.members(), ["b", "c"]);
    assert_eq!(b.neighbours(), ["a", "c"]);

    a.put("from/a", "1");
    b.put("from/b", "2");
    c.put("from/c", "3");
    a.bulk_put("bulk/", 200, 32);
    // The same key written on two nodes: last writer wins, the same everywhere.
    a.put("shared", "by-a");
    b.put("shared", "by-b");

    for node in [&mut a, &mut b, &mut c] {
        node.await_key("from/a", "1");
        node.await_key("from/b", "2");
        node.await_key("from/c", "3");
        node.await_key("bulk/199", "*");
        node.await_count(204);
    }
    let (root, keys) = await_same_root(&mut [&mut a, &mut b, &mut c]);
    assert_eq!(keys, 204);
    assert_ne!(root, 0);
    let shared = a.get("shared");
    assert!(shared.is_some());
    assert_eq!(b.get("shared"), shared);
    assert_eq!(c.get("shared"), shared);
}

#[test]
fn a_node_that_leaves_is_dropped_and_repaired_when_it_rejoins() {
    let h = Harness::new();
    let (mut a, mut b, mut c) = three(&h, false);
    a.put("before", "x");
    c.await_key("before", "x");

    // A clean departure.
    c.quit();
    for node in [&mut a, &mut b] {
        node.await_neighbours(1);
        node.await_members(1);
    }
    a.put("during/quit", "y");
    a.del("before");
    b.bulk_put("quit/", 50, 16);

    // c comes back empty (memory storage) on its old port and is repaired.
    c.restart();
    c.await_neighbours(2);
    c.await_key("during/quit", "y");
    c.await_key("before", "-");
    c.await_count(51);
    a.await_neighbours(2);
    b.await_neighbours(2);

    // A crash.
    b.kill();
    for node in [&mut a, &mut c] {
        node.await_neighbours(1);
        node.await_members(1);
    }
    c.put("during/kill", "z");
    b.restart();
    b.await_neighbours(2);
    b.await_key("during/kill", "z");
    b.await_key("before", "-");
    b.await_count(52);
    assert_eq!(b.neighbours(), ["a", "c"]);
    await_same_root(&mut [&mut a, &mut b, &mut c]);
}

#[test]
fn sigkill_loses_no_acknowledged_write() {
    let h = Harness::new();
    let mut a = h.spawn(h.disk_spec("a"));
    let mut b = h.spawn(h.disk_spec("b").seed(a.listen()));
    a.await_neighbours(1);
    b.await_neighbours(1);
    assert_eq!(b.ready()["restored"], false);
    let id = b.replica_id();

    const N: usize = 300;
    let pairs: Vec<(String, String)> = (0..N).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
    b.put_pipelined(&pairs);
    // Right after the last acknowledgement: no flush, no goodbye. a goes down too, so that
    // what b has after the restart can only come from b's own disk.
    b.kill();
    a.kill();

    b.restart();
    assert_eq!(b.ready()["restored"], true, "{}", b.ready());
    assert_eq!(b.replica_id(), id, "the replica id survives a restart");
    assert_eq!(number(b.ready(), "/keys"), N as u64, "{}", b.ready());
    for (key, value) in &pairs {
        assert_eq!(b.get(key).as_deref(), Some(value.as_str()), "{key}");
    }

    // Both back: they converge.
    a.restart();
    a.await_neighbours(1);
    a.await_count(N);
    await_same_root(&mut [&mut a, &mut b]);

    // b again, from an EMPTY data directory: a new replica, repaired from a.
    b.kill();
    let mut fresh = h.spec("b").data_dir(h.data_dir("b-fresh"));
    fresh.listen = b.listen();
    b.restart_with(fresh);
    assert_eq!(b.ready()["restored"], false);
    assert_ne!(
        b.replica_id(),
        id,
        "a node without state takes a fresh replica id"
    );
    b.await_neighbours(1);
    b.await_count(N);
    b.put("after", "fresh");
    a.await_key("after", "fresh");
    await_same_root(&mut [&mut a, &mut b]);
}

#[test]
fn bad_frames_are_refused_and_counted_while_the_replica_keeps_serving() {
    let h = Harness::new();
    let mut a = h.spawn(h.spec("a"));
    let mut b = h.spawn(h.spec("b").seed(a.listen()));
    a.await_neighbours(1);
    b.await_neighbours(1);
    a.put("before", "1");
    b.await_key("before", "1");

    // Sync-level faults are refused by the replica, an unframed one by the cluster envelope.
    for (fault, counter) in [
        ("garbage", "/replica/rejected_messages"),
        ("oversized", "/replica/rejected_messages"),
        ("future", "/replica/rejected_messages"),
        ("unframed", "/replica/frames_rejected"),
    ] {
        let before = number(&b.stats(), counter);
        a.ok(&format!("inject b {fault}"));
        eventually(
            WAIT,
            &format!("b counts the {fault} frame in {counter}"),
            || (number(&b.stats(), counter) > before).then_some(()),
        );
        // b still serves reads and writes.
        b.put(&format!("after/{fault}"), "ok");
        assert_eq!(b.get("before").as_deref(), Some("1"));
    }

    // And sync still works both ways (the session may have been re-established).
    b.await_neighbours(1);
    a.await_neighbours(1);
    a.put("after/faults", "a");
    b.await_key("after/faults", "a");
    a.await_key("after/unframed", "ok");
    await_same_root(&mut [&mut a, &mut b]);
}

#[test]
fn a_node_with_the_wrong_cookie_cannot_join() {
    let h = Harness::new();
    let mut a = h.spawn(h.spec("a").cookie("right"));
    let mut b = h.spawn(h.spec("b").cookie("right").seed(a.listen()));
    a.await_members(1);
    b.await_members(1);
    let mut x = h.spawn(h.spec("x").cookie("wrong").seed(a.listen()));

    let refused = eventually(WAIT, "x's session is refused", || {
        let refused = number(&x.stats(), "/cluster/sessions_refused");
        (refused >= 1).then_some(refused)
    });
    assert!(x.members().is_empty());
    assert!(x.neighbours().is_empty());
    assert_eq!(a.members(), ["b"]);
    assert_eq!(b.members(), ["a"]);
    assert_eq!(a.neighbours(), ["b"]);

    x.put("from/x", "intruder");
    a.put("marker", "m");
    b.await_key("marker", "m");
    // Give x the chance of another attempt (bounded; whether it retries is its own policy).
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline
        && number(&x.stats(), "/cluster/sessions_refused") == refused
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(a.get("from/x"), None);
    assert_eq!(b.get("from/x"), None);
    assert_eq!(x.get("marker"), None);
    assert!(x.members().is_empty());
    assert_eq!(a.members(), ["b"]);
}

#[test]
fn end_of_input_stops_the_node_cleanly_and_write_behind_is_flushed() {
    let h = Harness::new();
    let mut spec = h.disk_spec("solo");
    spec.write_behind = true;
    let mut solo = h.spawn(spec);
    solo.bulk_put("wb/", 100, 8);
    solo.put("last", "x");
    let id = solo.replica_id();
    solo.close_input();
    solo.restart();
    assert_eq!(solo.replica_id(), id);
    assert_eq!(number(solo.ready(), "/keys"), 101, "{}", solo.ready());
    assert_eq!(solo.get("last").as_deref(), Some("x"));
}

#[test]
fn usage_and_bad_arguments() {
    let herd = env!("CARGO_BIN_EXE_herd");
    let run = |args: &[&str]| {
        std::process::Command::new(herd)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run herd")
    };
    for args in [
        &[][..],
        &["frobnicate"],
        &["node"],
        &["node", "--name", "a", "--bogus"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("herd node"),
            "{args:?}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let out = run(&["help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("herd demo"));
}

/// Eight nodes started at once with one seed all join; a put on any reaches every other; and
/// once idle, a replica sends a few digests a second, not one to every neighbour every tick
/// (7 neighbours × 20 ticks a second = 140 before digests went out in bounded rounds).
#[test]
fn eight_nodes_join_through_one_seed_and_idle_in_bounded_rounds() {
    let h = Harness::new();
    let mut seed = h.spawn(h.spec("n0"));
    let mut nodes: Vec<Node> = (1..8)
        .map(|i| h.spawn(h.spec(&format!("n{i}")).seed(seed.listen())))
        .collect();
    seed.await_members(7);
    for node in &mut nodes {
        node.await_members(7);
    }
    nodes[3].put("from/n4", "x");
    seed.await_key("from/n4", "x");
    for node in &mut nodes {
        node.await_key("from/n4", "x");
    }
    // Idle: the rounds reach their longest interval (64 ticks) after 127 ticks (6.4 s).
    let sent = |n: &mut Node| number(&n.stats(), "/replica/messages_sent");
    eventually(Duration::from_secs(30), "the kv replica goes idle", || {
        let before = sent(&mut nodes[0]);
        std::thread::sleep(Duration::from_secs(2));
        let per_second = (sent(&mut nodes[0]) - before) / 2;
        (per_second <= 10).then_some(())
    });
    // Heartbeats go to the 3 peers watching a node, not to all 7: 5 a second to each, and an
    // answer to each watch renewal (1 a second each): 18 a second; 35 when beating to all.
    let beats = |n: &mut Node| number(&n.stats(), "/cluster/heartbeats_sent");
    let (before, start) = (beats(&mut nodes[1]), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let per_second = (beats(&mut nodes[1]) - before) as f64 / start.elapsed().as_secs_f64();
    assert!(per_second <= 25.0, "{per_second:.1} heartbeats a second");
}
