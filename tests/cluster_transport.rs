//! herd::cluster across two real processes on loopback.
//!
//! ractor's registries are global to a process, so node B is a second process: this test
//! binary re-executes itself with `HERD_CLUSTER_CHILD` set, which makes `child_node_role` run
//! a node and talk over stdout/stdin instead of returning at once.

mod group_events;
use group_events::{free_port, members_are, message_is, wait_event};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use herd::cluster::{ClusterError, GroupEvent, Node, NodeConfig};
use tokio::sync::mpsc;
use tokio::time::timeout;

const CHILD: &str = "HERD_CLUSTER_CHILD";
const GROUP: &str = "transport-test";
const MAX: usize = 1024;
const WAIT: Duration = Duration::from_secs(20);

// ------------------------------------------------------------------------------------------
// Child side
// ------------------------------------------------------------------------------------------

/// Node B when run as a child; a no-op in a normal test run.
///
/// Env: `HERD_CLUSTER_CHILD` = node name, `HERD_CHILD_LISTEN`, optional `HERD_CHILD_SEED` and
/// `HERD_CHILD_COOKIE`. Prints `HERD ...` lines; echoes every message back as `echo:<msg>`;
/// `garbage-please` makes it send an unframed garbage frame back; `stats` makes it print its
/// group counters. Exits when stdin closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_node_role() {
    let Ok(name) = std::env::var(CHILD) else {
        return;
    };
    let listen = std::env::var("HERD_CHILD_LISTEN").expect("HERD_CHILD_LISTEN");
    let mut config = NodeConfig::new(name)
        .listen(listen.parse().expect("listen addr"))
        .max_message_size(MAX);
    if let Ok(seed) = std::env::var("HERD_CHILD_SEED") {
        config = config.seed(seed);
    }
    if let Ok(cookie) = std::env::var("HERD_CHILD_COOKIE") {
        config = config.cookie(cookie);
    }
    let node = Node::start(config).await.expect("child node start");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let group = node
        .join_group(
            GROUP,
            Box::new(move |e| {
                let _ = tx.send(e);
            }),
        )
        .await
        .expect("child join");
    println!("HERD READY {}", node.listen_addr());

    let (stdin_tx, mut stdin_closed) = mpsc::channel::<()>(1);
    std::thread::spawn(move || {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        let _ = stdin_tx.blocking_send(());
    });

    loop {
        tokio::select! {
            _ = stdin_closed.recv() => break,
            () = tokio::time::sleep(Duration::from_secs(120)) => break,
            Some(event) = rx.recv() => match event {
                GroupEvent::Members(m) => {
                    let m: Vec<String> = m.into_iter().collect();
                    println!("HERD MEMBERS [{}]", m.join(","));
                }
                GroupEvent::Message { from, bytes } => {
                    let text = String::from_utf8_lossy(&bytes).to_string();
                    println!("HERD MSG from={from} text={text}");
                    match text.as_str() {
                        "garbage-please" => {
                            let _ = group.send_unframed(&from, vec![0xff, 0x00, 0x13, 0x37]);
                        }
                        "stats" => {
                            let s = group.stats();
                            println!(
                                "HERD STATS rejected={} received={}",
                                s.frames_rejected, s.frames_received
                            );
                        }
                        _ => {}
                    }
                    let mut echo = b"echo:".to_vec();
                    echo.extend_from_slice(&bytes);
                    if let Err(e) = group.send(&from, echo) {
                        println!("HERD SEND_ERR {e}");
                    }
                }
            },
        }
    }
    node.shutdown().await;
}

// ------------------------------------------------------------------------------------------
// Parent side
// ------------------------------------------------------------------------------------------

/// A child process running node B; killed on drop so a failing test leaves nothing behind.
struct ChildNode {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
}

impl ChildNode {
    fn spawn(name: &str, listen: &str, seed: Option<&str>, cookie: Option<&str>) -> ChildNode {
        let exe = std::env::current_exe().expect("current exe");
        let mut cmd = Command::new(exe);
        cmd.args([
            "--exact",
            "child_node_role",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, name)
        .env("HERD_CHILD_LISTEN", listen)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        if let Some(seed) = seed {
            cmd.env("HERD_CHILD_SEED", seed);
        }
        if let Some(cookie) = cookie {
            cmd.env("HERD_CHILD_COOKIE", cookie);
        }
        let mut child = cmd.spawn().expect("spawn child node");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        let tag = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest prints "test child_node_role ... " without a newline first.
                if let Some(at) = line.find("HERD ") {
                    let rest = &line[at + 5..];
                    println!("[{tag}] {rest}");
                    if tx.send(rest.to_string()).is_err() {
                        break;
                    }
                }
            }
        });
        ChildNode { child, lines }
    }

    /// Waits for a line starting with `prefix`.
    async fn expect(&mut self, prefix: &str) -> String {
        let wait = async {
            while let Some(line) = self.lines.recv().await {
                if line.starts_with(prefix) {
                    return line;
                }
            }
            panic!("child exited before printing {prefix:?}");
        };
        timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for child line {prefix:?}"))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `cond` until it holds or the wait runs out.
async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A (this process) and B (a child): membership, messages both ways, size limit, garbage
/// frames, B killed and restarted on the same port (A's seed loop redials), a node with the
/// wrong cookie refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_join_send_receive_reconnect() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let b_addr = format!("127.0.0.1:{}", free_port());
    // A starts first with B as its seed: B is not up yet, so A retries.
    let a = Node::start(NodeConfig::new("a").seed(&b_addr).max_message_size(MAX))
        .await
        .expect("start a");
    let (tx, mut events) = mpsc::unbounded_channel();
    let group = a
        .join_group(
            GROUP,
            Box::new(move |e| {
                let _ = tx.send(e);
            }),
        )
        .await
        .expect("join");
    wait_event(&mut events, "initial empty members", members_are(&[])).await;
    assert!(matches!(
        a.join_group(GROUP, Box::new(|_| {})).await,
        Err(ClusterError::AlreadyJoined { .. })
    ));

    let mut b = ChildNode::spawn("b", &b_addr, None, None);
    b.expect("READY").await;
    wait_event(&mut events, "b joins", members_are(&["b"])).await;
    assert_eq!(a.members(), ["b"]);
    assert_eq!(group.members(), BTreeSet::from(["b".to_string()]));
    b.expect("MEMBERS [a]").await;

    // A message and its echo.
    group.send("b", b"ping".to_vec()).expect("send ping");
    b.expect("MSG from=a text=ping").await;
    wait_event(&mut events, "echo of ping", message_is("b", "echo:ping")).await;

    // Refused locally: too large, not a member.
    assert!(matches!(
        group.send("b", vec![0; MAX + 1]),
        Err(ClusterError::TooLarge { len, limit: MAX }) if len == MAX + 1
    ));
    assert!(matches!(
        group.send("nobody", b"x".to_vec()),
        Err(ClusterError::NotAMember { .. })
    ));
    assert_eq!(group.stats().send_errors, 2);

    // Garbage from B is refused and counted by A; A keeps working.
    let before = group.stats();
    group.send("b", b"garbage-please".to_vec()).expect("send");
    wait_event(
        &mut events,
        "echo of garbage-please",
        message_is("b", "echo:garbage-please"),
    )
    .await;
    eventually("A counts B's garbage frame", async || {
        group.stats().frames_rejected > before.frames_rejected
    })
    .await;
    // Garbage from A is refused and counted by B.
    group
        .send_unframed("b", vec![0xde, 0xad, 0xbe, 0xef])
        .expect("send garbage");
    group.send("b", b"stats".to_vec()).expect("send");
    let line = b.expect("STATS").await;
    assert!(line.contains("rejected=1"), "{line}");
    wait_event(&mut events, "echo of stats", message_is("b", "echo:stats")).await;
    let s = group.stats();
    assert!(s.frames_sent >= 4 && s.frames_received >= 3, "{s:?}");

    // B dies: A sees it leave.
    b.kill();
    wait_event(&mut events, "b leaves", members_are(&[])).await;
    eventually("A's node members empty", async || a.members().is_empty()).await;
    assert!(a.stats().disconnects >= 1);
    assert!(matches!(
        group.send("b", b"x".to_vec()),
        Err(ClusterError::NotAMember { .. })
    ));

    // B comes back on the same port: A redials its seed.
    let attempts_before = a.stats().reconnect_attempts;
    let mut b = ChildNode::spawn("b", &b_addr, None, None);
    b.expect("READY").await;
    wait_event(&mut events, "b rejoins", members_are(&["b"])).await;
    b.expect("MEMBERS [a]").await;
    assert!(a.stats().reconnect_attempts > attempts_before);
    group.send("b", b"again".to_vec()).expect("send again");
    wait_event(&mut events, "echo of again", message_is("b", "echo:again")).await;

    // A node with the wrong cookie is refused and never becomes a member.
    let refused_before = a.stats().sessions_refused;
    let _c = ChildNode::spawn(
        "c",
        &format!("127.0.0.1:{}", free_port()),
        Some(&a.listen_addr().to_string()),
        Some("wrong-cookie"),
    );
    eventually("A refuses c", async || {
        a.stats().sessions_refused > refused_before
    })
    .await;
    assert_eq!(a.members(), ["b"]);
    assert_eq!(group.members(), BTreeSet::from(["b".to_string()]));

    group.leave().await;
    assert!(matches!(
        group.send("b", b"x".to_vec()),
        Err(ClusterError::ShutDown)
    ));
    b.expect("MEMBERS []").await;
    a.shutdown().await;
    drop(b);
}
