//! The node program as something to deploy: configuration from the environment, SIGTERM as
//! a graceful shutdown, and a bad input line that does not end the session.

mod support;

use std::time::Duration;

use support::{Harness, WAIT};

#[test]
fn a_line_that_is_not_utf8_gets_an_error_and_the_node_carries_on() {
    let h = Harness::new();
    let mut a = h.spawn(h.spec("a"));
    a.put("k", "before");
    // Before the fix, reading this line failed, the node quit and exited 0.
    a.process
        .send_bytes(b"put k \xff\xfe\n")
        .expect("write a bad line");
    let answer = a
        .process
        .recv("the answer to a bad line", WAIT)
        .expect("an answer");
    assert_eq!(answer["ok"], false, "{answer}");
    assert!(
        answer["error"].as_str().unwrap_or("").contains("UTF-8"),
        "{answer}"
    );
    assert_eq!(a.get("k").as_deref(), Some("before"));
    a.put("k", "after");
    assert_eq!(a.get("k").as_deref(), Some("after"));
}

#[test]
fn sigterm_flushes_hands_over_and_announces_the_leave() {
    let h = Harness::new();
    let mut a = h.spawn(h.spec("a"));
    let mut b = h.spawn(h.disk_spec("b").seed(a.listen()));
    for n in [&mut a, &mut b] {
        n.await_members(1);
    }
    b.put("written/by-b", "1");
    b.signal("TERM");
    let stopped = b
        .process
        .recv("the stopped line after SIGTERM", WAIT)
        .expect("a stopped line");
    assert_eq!(stopped["event"], "stopped", "{stopped}");
    assert_eq!(stopped["ok"], true, "{stopped}");
    b.close_input();
    // Peers saw an announced leave, not a crash.
    a.await_state("b", false);
    let events = a.events();
    assert!(
        events
            .iter()
            .any(|(e, n, r, _)| e == "down" && n == "b" && r.as_deref() == Some("left")),
        "{events:?}"
    );
    // The write was handed over, and it is on b's disk.
    assert_eq!(a.get("written/by-b").as_deref(), Some("1"));
    b.restart();
    assert_eq!(b.ready()["restored"], true);
    assert_eq!(b.get("written/by-b").as_deref(), Some("1"));
}

#[test]
fn the_cookie_can_come_from_the_environment() {
    let h = Harness::new();
    let mut a = h.spawn(h.spec("a").env("HERD_COOKIE", "from-env"));
    let mut b = h.spawn(h.spec("b").seed(a.listen()).cookie("from-env"));
    a.await_members(1);
    b.await_members(1);
    // A node with the default cookie is refused by a (whose cookie came from HERD_COOKIE).
    let mut c = h.spawn(h.spec("c").seed(a.listen()));
    support::eventually(WAIT, "a refuses c", || {
        (support::number(&a.stats(), "/cluster/sessions_refused") > 0).then_some(())
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(c.members(), Vec::<String>::new());
    assert_eq!(a.members(), ["b"]);
}
