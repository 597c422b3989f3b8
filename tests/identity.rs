//! Identity and connection safety across real processes: a node seeded with its own address,
//! and a second live node using a name already in the cluster.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{Harness, WAIT, eventually, number};

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn a_node_seeded_with_its_own_address_does_not_dial_itself() {
    let h = Harness::new();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut spec = h.spec("a").seed(addr.clone());
    spec.listen = addr;
    let mut a = h.spawn(spec);
    // Before the fix the dial loop reached the node itself, ractor refused the "self
    // connection", and the loop redialed forever. Nothing to wait for: give it time to
    // misbehave, then check it did not.
    std::thread::sleep(Duration::from_millis(1500));
    let stats = a.stats();
    assert_eq!(number(&stats, "/cluster/sessions_opened"), 0, "{stats}");
    assert_eq!(number(&stats, "/cluster/reconnect_attempts"), 0, "{stats}");
    // It still works as a seed for others.
    let mut b = h.spawn(h.spec("b").seed(a.listen()));
    a.await_members(1);
    b.await_members(1);
}

#[test]
fn a_second_node_with_a_taken_name_is_refused_and_told_why() {
    let h = Harness::new();
    let mut a = h.spawn(h.spec("a"));
    let mut b = h.spawn(h.spec("b").seed(a.listen()));
    a.await_members(1);
    b.await_members(1);

    // Another process calls itself b. Before the fix it silently displaced or flapped with
    // the first b: members stayed empty on one of them and its writes reached nobody.
    let impostor = h.spec("b").seed(a.listen()).log_file(h.data_dir("b2.log"));
    let mut b2 = h.spawn(impostor);
    let error = b2
        .process
        .recv("the refusal", WAIT)
        .expect("an error line from the second b");
    assert_eq!(error["event"], "error", "{error}");
    let text = error["error"].as_str().unwrap_or("");
    assert!(text.contains("already a member"), "{error}");
    assert!(
        !b2.process.close_input(WAIT),
        "a refused node must exit with a failure"
    );

    // The refusal is counted when a's side of the session closes, which may come after the
    // refused process has already exited (it quits in a few ms).
    eventually(WAIT, "a counts the refused session", || {
        (number(&a.stats(), "/cluster/sessions_refused") >= 1).then_some(())
    });
    // The first b is still a member and its writes still arrive.
    a.await_members(1);
    b.put("still/b", "1");
    a.await_key("still/b", "1");
    assert_eq!(a.members(), ["b"]);
    let downs: Vec<_> = a
        .events()
        .into_iter()
        .filter(|(e, _, _, _)| e == "down")
        .collect();
    assert!(downs.is_empty(), "the first b was reported down: {downs:?}");
}

/// Whether the server closed `s` before `deadline` (a read returns end of file or an error
/// other than a timeout).
fn closed_by(s: &mut TcpStream, deadline: Instant) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .expect("read timeout");
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn connections_that_do_not_authenticate_cannot_pin_memory_or_hold_slots() {
    let h = Harness::new();
    let mut a = h.spawn(h.spec("a"));
    let addr = a.listen();

    // 10,000 small frames that ractor takes for inter-node messages: before authentication
    // ractor logs a warning for each (10,000 lines); herd stops reading after a handshake's
    // worth, and the deadline closes the connection.
    let mut flood = TcpStream::connect(&addr).expect("connect");
    let frame = [0, 0, 0, 0, 0, 0, 0, 2, 0x12, 0x00];
    let mut sent = 0;
    flood
        .set_write_timeout(Some(Duration::from_millis(200)))
        .expect("write timeout");
    for _ in 0..10_000 {
        if flood.write_all(&frame).is_err() {
            break;
        }
        sent += 1;
    }
    assert!(sent > 16, "only {sent} frames could be sent");
    // 20 connections each announcing an 8 MiB frame before authenticating: ractor would
    // allocate and wait for each (176 MB held in the report); herd closes them at once.
    let mut big: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).expect("connect");
            s.write_all(&(8u64 << 20).to_be_bytes()).expect("announce");
            s
        })
        .collect();
    let soon = Instant::now() + Duration::from_secs(3);
    for s in &mut big {
        assert!(
            closed_by(s, soon),
            "a connection announcing 8 MiB stayed open"
        );
    }

    // 100 idle connections: beyond the cap of 64 waiting ones, new ones are closed at once,
    // and every one that never authenticates is closed after the handshake timeout (5 s).
    let mut idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    let soon = Instant::now() + Duration::from_secs(2);
    let refused_at_once = idle
        .iter_mut()
        .map(|s| closed_by(s, soon))
        .filter(|c| *c)
        .count();
    assert!(
        refused_at_once >= 30,
        "only {refused_at_once} of 100 idle connections were refused over the cap"
    );
    let later = Instant::now() + Duration::from_secs(10);
    for s in &mut idle {
        assert!(closed_by(s, later), "an idle connection was never closed");
    }
    let stats = a.stats();
    assert!(
        number(&stats, "/cluster/closed_before_auth") >= 120,
        "{stats}"
    );

    assert!(
        closed_by(&mut flood, Instant::now() + Duration::from_secs(10)),
        "the flooding connection was never closed"
    );
    let log = std::fs::read_to_string(h.data_dir("a.log")).unwrap_or_default();
    let warned = log
        .lines()
        .filter(|l| l.contains("unauthenticated NodeSession"))
        .count();
    assert!(
        warned <= 20,
        "{warned} warnings for one flooding connection"
    );

    // And the node still takes real peers.
    let mut b = h.spawn(h.spec("b").seed(addr));
    a.await_members(1);
    b.await_members(1);
}
