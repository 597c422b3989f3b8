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

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const ROLE: &str = "HERD_AGENT_TEST_NODE";
const WAIT: Duration = Duration::from_secs(30);

/// A node when this binary runs as a child; a no-op in a normal test run.
#[test]
fn child_node_role() {
    let Ok(name) = std::env::var(ROLE) else {
        return;
    };
    let seed = std::env::var("HERD_AGENT_TEST_SEED").ok();
    let v2 = std::env::var("HERD_AGENT_TEST_V2").is_ok();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    if let Err(e) = rt.block_on(node::run(&name, seed.as_deref(), v2)) {
        panic!("{name}: {e}");
    }
}

struct Proc {
    name: String,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    listen: String,
}

impl Proc {
    fn spawn(name: &str, seed: Option<&str>, v2: bool) -> Proc {
        let mut cmd = Command::new(std::env::current_exe().expect("own path"));
        cmd.args([
            "child_node_role",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        if let Some(seed) = seed {
            cmd.env("HERD_AGENT_TEST_SEED", seed);
        }
        if v2 {
            cmd.env("HERD_AGENT_TEST_V2", "1");
        }
        let mut child = cmd.spawn().expect("spawn a node");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut p = Proc {
            name: name.into(),
            child,
            stdin,
            lines,
            listen: String::new(),
        };
        // libtest prints `test child_node_role ... ` without a newline before it.
        let ready = p.next(|l| l.contains("READY "));
        let at = ready.find("READY ").map_or(0, |i| i + "READY ".len());
        p.listen = ready[at..].to_owned();
        p
    }

    fn next(&mut self, want: impl Fn(&str) -> bool) -> String {
        let end = std::time::Instant::now() + WAIT;
        loop {
            let left = end.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if want(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!("{}: no answer within {WAIT:?}", self.name),
            }
        }
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").expect("write");
        self.stdin.flush().expect("flush");
    }

    fn answer(&mut self) -> String {
        self.next(|l| l == "OK" || l.starts_with("VALUE ") || l.starts_with("ERR "))
    }

    fn ask(&mut self, command: &str) -> String {
        self.send(command);
        self.answer()
    }

    /// Waits (node side, with a deadline) until `field` holds `json`; returns the value.
    fn wait(&mut self, field: &str, json: &str) -> serde_json::Value {
        let answer = self.ask(&format!("wait {field} {json} {}", WAIT.as_millis()));
        let Some(value) = answer.strip_prefix("VALUE ") else {
            panic!("{}: wait {field} {json}: {answer}", self.name);
        };
        serde_json::from_str(value).expect("json")
    }

    fn get(&mut self) -> serde_json::Value {
        let answer = self.ask("get");
        serde_json::from_str(answer.strip_prefix("VALUE ").expect("a value")).expect("json")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn concurrent_field_updates_on_two_nodes_both_survive() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let mut a = Proc::spawn("a", None, false);
    let mut b = Proc::spawn("b", Some(&a.listen), false);
    // Both connected: a change on each side reaches the other.
    a.ask("set features.a true");
    b.wait("features.a", "true");
    // At the same moment, different fields; then the same field on both.
    a.send("set limits.max_conns 500");
    b.send("set limits.timeout_ms 250");
    assert_eq!(a.answer(), "OK");
    assert_eq!(b.answer(), "OK");
    for p in [&mut a, &mut b] {
        p.wait("limits.max_conns", "500");
        p.wait("limits.timeout_ms", "250");
    }
    a.send("set maintenance true");
    b.send("set maintenance false");
    assert_eq!(a.answer(), "OK");
    assert_eq!(b.answer(), "OK");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (va, vb) = (a.get(), b.get());
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
    let mut old = Proc::spawn("old", None, false);
    let mut new = Proc::spawn("new", Some(&old.listen), true);
    assert_eq!(new.ask(r#"set region "eu""#), "OK");
    // The old node updates after the new field reached it: it must not erase it.
    old.ask("set features.region_seen true");
    new.wait("features.region_seen", "true");
    old.ask("set limits.max_conns 77");
    let v = new.wait("limits.max_conns", "77");
    assert_eq!(v["region"], "eu", "{v}");
    // The old node's view has no such field; after a SIGKILL and a restart with an empty
    // store it catches up, and still does not erase it.
    let v = old.get();
    assert!(v.get("region").is_none(), "{v}");
    drop(old);
    let mut old = Proc::spawn("old2", Some(&new.listen), false);
    old.wait("limits.max_conns", "77");
    old.ask("set maintenance true");
    let v = new.wait("maintenance", "true");
    assert_eq!(v["region"], "eu", "{v}");
}
