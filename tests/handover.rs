//! `Node::shutdown` hands over before leaving, also when the replica was not stopped first:
//! an in-process node writes and shuts down at once; a `herd node` process must hold the
//! write the moment the shutdown returns. (The node program stops its replica first, which
//! `tests/membership.rs` covers.) One in-process node per binary: ractor's registries are
//! global to a process.

mod support;

use std::time::{Duration, Instant};

use herd::cluster::{Node, NodeConfig};
use herd::replica::{Kv, ReplicaOptions};
use support::Harness;
use tokio::task::block_in_place;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_shutdown_hands_the_replica_over_first() {
    let a = Node::start(NodeConfig::new("a")).await.expect("start a");
    // The node program's replica is named `kv`.
    let kv = Kv::start(&a, ReplicaOptions::new("kv"))
        .await
        .expect("start kv");
    let h = Harness::new();
    let mut b = block_in_place(|| h.spawn(h.spec("b").seed(a.listen_addr().to_string())));
    let deadline = Instant::now() + WAIT;
    while kv.neighbours() != ["b"] {
        assert!(Instant::now() < deadline, "b never became a neighbour");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Write and leave at once: before the handover the write left with the node.
    kv.put("config/x".to_string(), "42".to_string())
        .await
        .expect("put");
    a.shutdown().await;
    let got = block_in_place(|| b.get("config/x"));
    assert_eq!(got.as_deref(), Some("42"));
    kv.stop().await.expect("stop kv");
}
