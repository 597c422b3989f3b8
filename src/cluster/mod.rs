//! The cluster layer: ractor_cluster nodes, membership, and groups that carry opaque bytes.
//!
//! A [`Node`] runs one ractor_cluster `NodeServer`, dials its seeds and keeps track of which
//! peers are live. On a node, [`Node::join_group`] gives a [`Group`]: the node's membership of
//! a named group, through which it sends bytes to the same group on other nodes and learns
//! which nodes are in it. The replica layer runs one group per replicated CRDT; the payloads
//! are opaque here.
//!
//! ```no_run
//! use herd::cluster::{GroupEvent, Node, NodeConfig};
//!
//! # async fn demo() -> Result<(), herd::cluster::ClusterError> {
//! let node = Node::start(NodeConfig::new("node-a").seed("10.0.0.2:4100")).await?;
//! let group = node
//!     .join_group("kv", Box::new(|event| match event {
//!         GroupEvent::Members(nodes) => println!("members: {nodes:?}"),
//!         GroupEvent::Message { from, bytes } => println!("{} bytes from {from}", bytes.len()),
//!     }))
//!     .await?;
//! for peer in group.members() {
//!     group.send(&peer, b"hello".to_vec())?;
//! }
//! node.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Identity
//!
//! A node is its [`NodeConfig::name`], which must be unique in the cluster. ractor's `node_id`
//! is never used as an identity: it numbers *sessions*, and every reconnect, duplicate
//! connection or lost election gets a new one. herd names the ractor node
//! `"{name}#{incarnation}"` (a random number per process; ractor adds `"@{host}"`) and strips
//! both parts again. The incarnation keeps ractor from electing between two *processes* that
//! use one name (it would silently refuse one before authentication or displace the other);
//! herd compares the names itself: a session from a second live process with a name already
//! held at another address is refused, the refusing node logs an error and tells the
//! newcomer, whose [`Node::refused`] then resolves with [`ClusterError::NameTaken`] and which
//! stops dialing. The first holder keeps the name. A session from a process with this node's
//! own name is closed without a notice (which of the two came first is not known there). A
//! seed that is this node's own address is skipped.
//!
//! # Membership
//!
//! - **Node level** ([`Node::subscribe`], [`Node::members`], [`Node::peers`]): herd's view,
//!   not ractor's sessions. A peer is Up once a session to it authenticates; it is Down when
//!   it announces its leave ([`DownReason::Left`], at once), when its last session closed and
//!   none came back within the reconnect grace period ([`DownReason::ConnectionClosed`]), or
//!   when the failure detector heard no heartbeat for `down_after` although its session is
//!   open ([`DownReason::Unresponsive`]; herd then closes the session, so its group members
//!   leave, and redials it). Duplicate-connection elections and quick reconnects produce no
//!   events; for each node name Up and Down alternate. [`Node::subscribe`] returns the
//!   current members and the stream of later [`MemberEvent`]s atomically.
//!   [`Node::cluster_members`] and [`Group::all_members`] include this node, sorted: the same
//!   list on every node that sees the same membership.
//! - **Failure detection**: each node is watched by [`DetectorConfig::monitors`] peers (3;
//!   its predecessors on a ring ordered by a hash of the names, as in Akka Cluster): a
//!   watcher asks it for a tiny heartbeat every `heartbeat_interval` (200 ms) on a reserved
//!   group (`_herd.heartbeat`), handled by its own actor, and a fixed timeout with a margin
//!   (`down_after`, 1.5 s) declares a silent watched peer Down. The watcher then tells every
//!   other member, which probes the peer itself and declares it Down if it does not answer
//!   within `down_after`: a hung node is reported everywhere within about 3 s, one
//!   broken link does not remove a node from the whole cluster, and a node sends and receives
//!   about 3 heartbeats per interval whatever the cluster's size (every node beating to
//!   every other was most of an idle 32-node cluster's traffic and CPU). See the `detector`
//!   and `monitors` modules for why a fixed timeout and not phi-accrual, and
//!   [`DetectorConfig`].
//! - **Group level** ([`Group::members`], [`GroupEvent::Members`]): each (node, group) has
//!   one endpoint actor, registered as `herd:{group}@{node}` and a member of the pg group
//!   `herd:{group}`. ractor_cluster mirrors pg memberships to every peer as *stand-in* actors
//!   whose name is the endpoint's name, which is how a member is mapped to its node name. The
//!   endpoint monitors the pg group and keeps node name -> current stand-in; it never caches a
//!   stand-in across sessions, because a reconnect creates a new one. While the old and the new
//!   stand-in of one node overlap, the node stays a member and messages go to the newest.
//!   [`Group::members`] holds remote nodes only; [`Group::all_members`] adds this one.
//!
//! # Actors across nodes
//!
//! [`Node::publish`] makes a user's actor (a message type ractor_cluster can serialize:
//! `#[derive(RactorClusterMessage)]`) reachable from every node under a name: it joins the
//! pg group `herd.actor:{name}`, which ractor_cluster mirrors to every peer as a remote
//! stand-in. [`Node::resolve`] returns what to `cast`/`call` ([`Located`], with the hosting
//! node), [`Node::locate`] the hosting nodes, and [`Node::watch_actor`] a stream of
//! [`ActorEvent`]s: Up, and Down when the actor stops ([`ActorGone::Stopped`]) or its node's
//! connection closes ([`ActorGone::NodeDown`]). One name, one message type: ractor cannot
//! check a remote actor's type.
//!
//! # Graceful leave
//!
//! [`Node::shutdown`] first runs each group's handover (a replica waits until every
//! neighbour has shown it holds everything the replica holds, at most
//! [`NodeConfig::handover_timeout`]), then announces the leave on the heartbeat group and
//! waits briefly for acknowledgements, then leaves its groups and closes its sessions.
//! [`Group::leave`] (which `Replica::stop` calls) runs the handover too.
//!
//! # Messages
//!
//! [`Group::send`] wraps the payload in an envelope (`crate::codec` version byte, sender node
//! name, payload) and sends it fire-and-forget: `Ok` means queued, not delivered. The receiver
//! checks the size before decoding, refuses malformed, oversized, future-version or
//! non-member frames with a `warn!` log and a count in [`GroupStats::frames_rejected`], and
//! never panics. ractor's own inbound frame limit is set to `2 * max_message_size + 64 KiB`,
//! so an oversized herd message is refused by herd instead of tearing the session down.
//!
//! # Reconnects
//!
//! ractor_cluster never redials. herd dials each seed at start and again whenever the peer it
//! reached loses its last session, forever, with a backoff of 50 ms doubling to 1 s. A peer
//! learned from a session (its advertised `host:port`) is redialed the same way, after a short
//! delay, for up to 60 s. At most one dial loop runs per address, and a loop does not dial
//! while a live session reaches that address: redialing naively displaces live sessions and
//! makes them flap. Without TLS, ractor_cluster also dials the peers of its peers
//! (*transitive* mode), so one seed is enough to join a full mesh.
//!
//! # TLS
//!
//! With [`NodeConfig::tls`] every session, inbound and outbound, uses TLS. ractor_cluster's
//! transitive dialing does not, so a TLS node runs in *isolated* mode: it connects only to
//! its seeds and to the nodes that dial it. List every node a node should reach in its seeds.
//! A failed TLS handshake on an inbound connection (a peer without TLS, or with a certificate
//! the acceptor does not trust) never becomes a ractor session: herd logs it (rate-limited)
//! and counts it in [`ClusterStats::closed_before_auth`]; the dialing node counts a refused
//! session.
//!
//! # Before authentication
//!
//! herd accepts inbound connections itself (ractor_cluster's own listener is stopped) and
//! hands each stream to the NodeServer: every TLS handshake runs in its own task with a 5 s
//! timeout (ractor_cluster 0.16.5 runs it inline, so one silent connection stopped a TLS
//! node from accepting anyone); until the session authenticates, a frame over 64 KiB
//! announced in the handshake, or over 1 MiB after it, closes it (ractor allocates an
//! announced frame before reading it, and its limit is set for herd messages), it is closed if it has not authenticated 5 s after the accept,
//! at most 64 such connections wait at a time, and
//! none is read beyond 16 frames (ractor logs a warning for every inter-node frame an
//! unauthenticated peer sends). Logs about refused connections are
//! limited to one line a second.
//!
//! # Not handled
//!
//! - **Delivery.** Sends are fire-and-forget; messages queued on a session that closes are
//!   lost silently. The replica protocol's acks and repair rounds cover this.
//! - **Name races.** If two processes with one name join at the same moment, a node that
//!   sees the newcomer first keeps it and refuses the other; and a node restarted on a new
//!   address while its old process still holds a session (hung, not yet declared down) is
//!   refused until the detector declares the old one down.
//! - **Access control** beyond the cookie: an authenticated peer may message any endpoint.
//! - **Several nodes in one process.** ractor's registries are global to a process, so two
//!   [`Node`]s in one process share pg groups and do not behave like two nodes.

mod acceptor;
mod actors;
mod config;
mod detector;
mod envelope;
mod error;
mod events;
mod group;
mod heartbeat;
mod members;
mod membership;
mod monitors;
mod node;
mod ratelimit;
mod reconnect;
mod sessions;

/// Locks `m`, ignoring poison: the cluster's tables stay valid between statements, so a panic
/// elsewhere while holding one must not turn every later call into a panic.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub use actors::{ActorEvent, ActorGone, ActorWatch, Located};
pub use config::{
    DEFAULT_COOKIE, DEFAULT_MAX_MESSAGE_SIZE, MAX_NODE_NAME_LEN, NodeConfig, TlsConfig,
};
pub use detector::{DetectorConfig, DownReason, MemberEvent, PeerState, PeerStatus};
pub use error::ClusterError;
pub(crate) use group::HandoverHook;
pub use group::{Group, GroupEvent, GroupStats};
pub use membership::Subscription;
pub(crate) use node::HandoverProbe;
pub use node::{ClusterStats, Node};
