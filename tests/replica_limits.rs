//! A replica's limits are checked against its node's at start: a `max_sync_size` larger than
//! the node's `max_message_size` would make every larger sync message a refused send.

use herd::cluster::{Node, NodeConfig};
use herd::replica::{Kv, ReplicaError, ReplicaOptions};

#[tokio::test]
async fn a_sync_size_above_the_nodes_message_size_is_refused_at_start() {
    let node = Node::start(
        NodeConfig::new("limits")
            .listen("127.0.0.1:0".parse().unwrap())
            .max_message_size(64 * 1024),
    )
    .await
    .unwrap();
    let too_big = ReplicaOptions::new("kv").max_sync_size(1 << 20);
    match Kv::start(&node, too_big).await {
        Err(ReplicaError::LimitsDisagree {
            max_sync_size,
            max_message_size,
        }) => assert_eq!((max_sync_size, max_message_size), (1 << 20, 64 * 1024)),
        other => panic!("expected LimitsDisagree, got {other:?}"),
    }
    // Within the limit it starts, and the refused attempt left no group behind.
    let kv = Kv::start(&node, ReplicaOptions::new("kv").max_sync_size(60 * 1024))
        .await
        .unwrap();
    kv.stop().await.unwrap();
    node.shutdown().await;
}
