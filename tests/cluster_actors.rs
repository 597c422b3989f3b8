//! A user's actor reachable across two real processes: published on one node, found and
//! called from the other, watched as it stops, comes back, and as its node is killed.
//!
//! The other node is this test binary re-executed with `HERD_ACTORS_CHILD` set, which makes
//! `actors_child_role` run it (a no-op in a normal run). One in-process node per binary:
//! ractor's registries are global to a process.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use herd::cluster::{ActorEvent, ActorGone, ClusterError, Node, NodeConfig};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use tokio::sync::mpsc;
use tokio::time::timeout;

const CHILD: &str = "HERD_ACTORS_CHILD";
const WAIT: Duration = Duration::from_secs(20);

/// The user's message type: serializable by ractor_cluster, with a call.
#[derive(RactorClusterMessage)]
enum EchoMsg {
    #[rpc]
    Echo(String, RpcReplyPort<String>),
}

struct Echo {
    node: String,
}

impl Actor for Echo {
    type Msg = EchoMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<EchoMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<EchoMsg>,
        msg: EchoMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EchoMsg::Echo(text, reply) => {
                let _ = reply.send(format!("{text} from {}", self.node));
            }
        }
        Ok(())
    }
}

async fn start_echo(node: &Node) -> ActorRef<EchoMsg> {
    let (echo, _) = Actor::spawn(
        None,
        Echo {
            node: node.name().to_string(),
        },
        (),
    )
    .await
    .expect("spawn echo");
    node.publish("echo", &echo).expect("publish");
    echo
}

/// The child node: publishes an echo actor; `stop` stops it, `start` starts a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actors_child_role() {
    let Ok(seed) = std::env::var(CHILD) else {
        return;
    };
    let node = Node::start(NodeConfig::new("b").seed(seed))
        .await
        .expect("child start");
    let mut echo = Some(start_echo(&node).await);
    println!("HERD READY");
    let (tx, mut lines) = mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = lines.recv().await {
        match line.trim() {
            "stop" => {
                if let Some(e) = echo.take() {
                    e.stop_and_wait(None, None).await.expect("stop echo");
                }
                println!("HERD STOPPED");
            }
            "start" => {
                echo = Some(start_echo(&node).await);
                println!("HERD STARTED");
            }
            _ => {}
        }
    }
}

struct ChildNode {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
}

impl ChildNode {
    fn spawn(seed: &str) -> ChildNode {
        let exe = std::env::current_exe().expect("current exe");
        let mut child = Command::new(exe)
            .args([
                "--exact",
                "actors_child_role",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, seed)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take().expect("stdin");
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest prints "test actors_child_role ... " without a newline first.
                if let Some(at) = line.find("HERD ")
                    && tx.send(line[at + 5..].to_string()).is_err()
                {
                    break;
                }
            }
        });
        ChildNode {
            child,
            stdin,
            lines,
        }
    }

    async fn expect(&mut self, what: &str) {
        let wait = async {
            while let Some(line) = self.lines.recv().await {
                if line.starts_with(what) {
                    return;
                }
            }
            panic!("child exited before {what}");
        };
        timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to child");
        self.stdin.flush().expect("flush");
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn next_event(events: &mut mpsc::UnboundedReceiver<ActorEvent>, what: &str) -> ActorEvent {
    timeout(WAIT, events.recv())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap_or_else(|| panic!("watch closed before {what}"))
}

async fn call_echo(node: &Node, text: &str) -> String {
    let found = node.resolve::<EchoMsg>("echo");
    let remote = found
        .iter()
        .find(|l| l.node == "b")
        .expect("echo on b is resolvable");
    let answer = remote
        .actor
        .call(|port| EchoMsg::Echo(text.to_string(), port), Some(WAIT))
        .await
        .expect("call sent");
    match answer {
        ractor::rpc::CallResult::Success(s) => s,
        other => panic!("call failed: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_actor_is_found_called_and_watched() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let a = Node::start(NodeConfig::new("a")).await.expect("start a");
    let mut watch = a.watch_actor("echo").await.expect("watch");
    // An actor of this node under the same name: resolve lists both, sorted by node.
    let local = start_echo(&a).await;
    assert_eq!(
        next_event(&mut watch.events, "local up").await,
        ActorEvent::Up { node: "a".into() }
    );

    let mut b = ChildNode::spawn(&a.listen_addr().to_string());
    b.expect("READY").await;
    assert_eq!(
        next_event(&mut watch.events, "b's echo up").await,
        ActorEvent::Up { node: "b".into() }
    );
    assert_eq!(a.locate("echo").into_iter().collect::<Vec<_>>(), ["a", "b"]);
    let nodes: Vec<String> = a
        .resolve::<EchoMsg>("echo")
        .into_iter()
        .map(|l| l.node)
        .collect();
    assert_eq!(nodes, ["a", "b"]);
    assert_eq!(call_echo(&a, "hello").await, "hello from b");
    // A stand-in cannot be published again here.
    let remote = a
        .resolve::<EchoMsg>("echo")
        .into_iter()
        .find(|l| l.node == "b")
        .expect("remote");
    assert!(matches!(
        a.publish("again", &remote.actor),
        Err(ClusterError::NotLocal { .. })
    ));

    // The remote actor stops: a notice, and its node stays.
    b.send("stop");
    b.expect("STOPPED").await;
    assert_eq!(
        next_event(&mut watch.events, "b's echo stopped").await,
        ActorEvent::Down {
            node: "b".into(),
            reason: ActorGone::Stopped
        }
    );
    assert_eq!(a.members(), ["b"]);

    // It comes back and answers again.
    b.send("start");
    b.expect("STARTED").await;
    assert_eq!(
        next_event(&mut watch.events, "b's echo back").await,
        ActorEvent::Up { node: "b".into() }
    );
    assert_eq!(call_echo(&a, "again").await, "again from b");

    // Its node is killed: a notice saying so.
    let _ = b.child.kill();
    let _ = b.child.wait();
    assert_eq!(
        next_event(&mut watch.events, "b killed").await,
        ActorEvent::Down {
            node: "b".into(),
            reason: ActorGone::NodeDown
        }
    );
    assert_eq!(a.locate("echo").into_iter().collect::<Vec<_>>(), ["a"]);
    a.unpublish("echo", &local);
    assert_eq!(
        next_event(&mut watch.events, "local unpublished").await,
        ActorEvent::Down {
            node: "a".into(),
            reason: ActorGone::Stopped
        }
    );
    drop(watch);
    a.shutdown().await;
}
