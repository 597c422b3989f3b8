//! A cluster node: the ractor_cluster `NodeServer`, its session events, and the groups.

use super::lock;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorRef};
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::{IncomingEncryptionMode, NodeServer, NodeServerMessage};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::acceptor::{self, Acceptor};
use super::detector::PeerStatus;
use super::events::{Forward, event_loop};
use super::group::{self, Group, GroupEvent, GroupStats};
use super::heartbeat::{self, HEARTBEAT_GROUP, LeaveAcks, RESERVED_PREFIX};
use super::members::ractor_name;
use super::membership::{Membership, Subscription};
use super::reconnect::Dialer;
use super::sessions::SessionTable;
use super::{ClusterError, NodeConfig};

/// How long shutdown waits for actors to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Session counters of a node, since it started. Cheap to read: a snapshot of atomics.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Sessions opened, inbound and outbound (before authentication).
    pub sessions_opened: u64,
    /// Sessions that authenticated (cookie accepted, peer named).
    pub sessions_authenticated: u64,
    /// Sessions that closed before authenticating: wrong cookie, failed handshake, or the
    /// losing side of ractor's duplicate-connection election.
    pub sessions_refused: u64,
    /// Authenticated sessions that closed (a peer is down only when its last one closes).
    pub disconnects: u64,
    /// Dials made to restore a lost session, plus retries of the first dial to a seed.
    pub reconnect_attempts: u64,
    /// Heartbeat messages sent (to all peers together).
    pub heartbeats_sent: u64,
    /// Bytes of those heartbeats, herd's envelope included (ractor's framing adds about 20
    /// bytes per message, see the book's membership chapter).
    pub heartbeat_bytes_sent: u64,
    /// Heartbeat messages received.
    pub heartbeats_received: u64,
    /// Inbound connections closed by herd's acceptor before they authenticated: handshake
    /// not finished within 5 s, a frame over 64 KiB announced in the handshake (1 MiB after
    /// it), a failed TLS handshake, or too many connections already waiting.
    pub closed_before_auth: u64,
    /// Times the failure detector found this node itself paused (its tick came very late)
    /// and restarted its deadlines instead of declaring peers down.
    pub detector_pauses: u64,
    /// Messages sent by every group this node is in now, heartbeats included: what the node
    /// puts on the wire, less ractor's framing (about 20 bytes a message).
    pub frames_sent: u64,
    /// Bytes of those messages, herd's envelope included.
    pub bytes_sent: u64,
    /// Messages received and accepted by every group this node is in now, heartbeats
    /// included.
    pub frames_received: u64,
    /// Bytes of those messages, herd's envelope included.
    pub bytes_received: u64,
}

/// The atomics behind [`ClusterStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sessions_opened: AtomicU64,
    pub(crate) sessions_authenticated: AtomicU64,
    pub(crate) sessions_refused: AtomicU64,
    pub(crate) disconnects: AtomicU64,
    pub(crate) reconnect_attempts: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ClusterStats {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClusterStats {
            sessions_opened: r(&self.sessions_opened),
            sessions_authenticated: r(&self.sessions_authenticated),
            sessions_refused: r(&self.sessions_refused),
            disconnects: r(&self.disconnects),
            reconnect_attempts: r(&self.reconnect_attempts),
            ..ClusterStats::default()
        }
    }
}

/// A running cluster node. Cheap to clone (an `Arc` inside); all clones are the same node.
///
/// See the [module docs](super) for membership, reconnects and identity. Dropping the last
/// clone does not stop the node (ractor's actors outlive it): call [`Node::shutdown`].
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    listen_addr: SocketAddr,
    max_message_size: usize,
    server: ActorRef<NodeServerMessage>,
    table: Arc<Mutex<SessionTable>>,
    counters: Arc<Counters>,
    dialer: Arc<Dialer>,
    events: Mutex<Option<JoinHandle<()>>>,
    /// Joined groups, by group name.
    pub(crate) groups: Arc<Mutex<HashMap<String, Group>>>,
    membership: Arc<Membership>,
    /// The reserved heartbeat group and the task beating on it.
    heartbeats: Group,
    beating: Mutex<Option<JoinHandle<()>>>,
    leave_acks: Arc<LeaveAcks>,
    leave_timeout: Duration,
    handover_timeout: Duration,
    /// Set when a peer refused this node because its name is taken: (peer, the address of
    /// the node that holds the name).
    refused: watch::Sender<Option<(String, String)>>,
    /// herd's acceptor of inbound connections and its task.
    acceptor: Arc<Acceptor>,
    accepting: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.inner.name)
            .field("listen_addr", &self.inner.listen_addr)
            .finish_non_exhaustive()
    }
}

/// A random number naming this process's run of the node (see [`ractor_name`]).
fn random_incarnation() -> u64 {
    use std::hash::BuildHasher;
    let salt = (std::time::SystemTime::now(), std::process::id());
    std::collections::hash_map::RandomState::new().hash_one(salt)
}

/// `hostname` for ractor_cluster: it becomes the host part of the advertised `host:port`.
fn advertised_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Spawns the NodeServer on `config.listen`, picking a free port first if it is 0 (ractor
/// binds port 0 fine but never says which port it got). Retries the pick a few times in case
/// another process takes the port in between.
async fn spawn_server(
    config: &NodeConfig,
    incarnation: u64,
) -> Result<(ActorRef<NodeServerMessage>, SocketAddr), ClusterError> {
    let ip = config.listen.ip();
    let pick = config.listen.port() == 0;
    let tries = if pick { 5 } else { 1 };
    let mut last = String::new();
    for _ in 0..tries {
        let port = if pick {
            let l = std::net::TcpListener::bind((ip, 0)).map_err(|e| ClusterError::Listen {
                addr: config.listen,
                reason: e.to_string(),
            })?;
            let port = l
                .local_addr()
                .map_err(|e| ClusterError::Listen {
                    addr: config.listen,
                    reason: e.to_string(),
                })?
                .port();
            drop(l);
            port
        } else {
            config.listen.port()
        };
        let (encryption, mode) = match &config.tls {
            Some(tls) => (
                Some(IncomingEncryptionMode::Tls(tls.acceptor.clone())),
                NodeConnectionMode::Isolated,
            ),
            None => (None, NodeConnectionMode::Transitive),
        };
        let server = NodeServer::new(
            port,
            config.cookie.clone(),
            ractor_name(&config.name, incarnation),
            advertised_host(ip),
            encryption,
            Some(mode),
        )
        .with_listen_addr(ip)
        .with_max_inbound_frame_size(config.inbound_frame_limit());
        match Actor::spawn(None, server, ()).await {
            Ok((server, _handle)) => return Ok((server, SocketAddr::new(ip, port))),
            Err(e) => last = e.to_string(),
        }
    }
    Err(ClusterError::Listen {
        addr: config.listen,
        reason: last,
    })
}

impl Node {
    /// Starts a node: listens on `config.listen`, subscribes to session events and starts
    /// dialing the seeds (in the background: this returns before any seed is reached; use
    /// [`Node::members`] or a group's [`GroupEvent::Members`] to learn when peers arrive).
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidConfig`] for a bad configuration, [`ClusterError::Listen`] if
    /// the address cannot be bound.
    pub async fn start(config: NodeConfig) -> Result<Node, ClusterError> {
        config.validate()?;
        let incarnation = random_incarnation();
        let (server, listen_addr) = spawn_server(&config, incarnation).await?;
        // herd accepts inbound connections itself (see acceptor.rs for why).
        acceptor::park_ractor_listener(&server).await;
        let tcp = match acceptor::bind(listen_addr).await {
            Ok(l) => l,
            Err(e) => {
                let _ = server.stop_and_wait(None, Some(STOP_TIMEOUT)).await;
                return Err(ClusterError::Listen {
                    addr: listen_addr,
                    reason: e.to_string(),
                });
            }
        };
        let acceptor = Arc::new(Acceptor::default());
        let accepting = tokio::spawn(acceptor::run(
            tcp,
            server.clone(),
            config.tls.as_ref().map(|t| t.acceptor.clone()),
            Arc::clone(&acceptor),
        ));
        let (tx, rx) = mpsc::unbounded_channel();
        server
            .cast(NodeServerMessage::SubscribeToEvents {
                id: "herd".to_string(),
                subscription: Box::new(Forward(tx, Arc::clone(&acceptor))),
            })
            .map_err(|e| ClusterError::Listen {
                addr: listen_addr,
                reason: format!("cannot subscribe to node events: {e}"),
            })?;
        let table = Arc::new(Mutex::new(SessionTable::default()));
        let counters = Arc::new(Counters::default());
        let dialer = Arc::new(Dialer::new(
            server.clone(),
            config.tls.clone(),
            config.seeds.clone(),
            Arc::clone(&table),
            Arc::clone(&counters),
            listen_addr,
        ));
        let membership = Arc::new(Membership::new(config.detector, &config.name));
        let hb_cell: Arc<std::sync::OnceLock<Group>> = Arc::new(std::sync::OnceLock::new());
        let events = tokio::spawn(event_loop(
            config.name.clone(),
            listen_addr,
            Arc::clone(&acceptor),
            rx,
            Arc::clone(&table),
            Arc::clone(&counters),
            Arc::clone(&dialer),
            Arc::clone(&membership),
            Arc::clone(&hb_cell),
        ));
        let leave_acks = Arc::new(LeaveAcks::default());
        let refused = watch::Sender::new(None);
        let on_refused: Arc<dyn Fn(String, String) + Send + Sync> = {
            let (refused, dialer, name) =
                (refused.clone(), Arc::clone(&dialer), config.name.clone());
            Arc::new(move |by: String, existing: String| {
                tracing::error!(node = %name, refused_by = %by, %existing, "refused: another live node already uses this node's name; not dialing any more");
                dialer.stop();
                refused.send_replace(Some((by, existing)));
            })
        };
        let heartbeats = match group::start(
            HEARTBEAT_GROUP,
            &config.name,
            config.max_message_size,
            heartbeat::on_event(
                Arc::clone(&membership),
                Arc::clone(&hb_cell),
                Arc::clone(&leave_acks),
                on_refused,
            ),
            std::sync::Weak::new(),
            None,
        )
        .await
        {
            Ok(g) => g,
            Err(e) => {
                events.abort();
                accepting.abort();
                let _ = server.stop_and_wait(None, Some(STOP_TIMEOUT)).await;
                return Err(e);
            }
        };
        let _ = hb_cell.set(heartbeats.clone());
        let beating = tokio::spawn(heartbeat::run(
            Arc::clone(&membership),
            heartbeats.clone(),
            config.detector.heartbeat_interval,
        ));
        dialer.dial_seeds();
        tracing::info!(node = %config.name, %listen_addr, seeds = ?config.seeds, tls = config.tls.is_some(), "node started");
        Ok(Node {
            inner: Arc::new(Inner {
                name: config.name,
                listen_addr,
                max_message_size: config.max_message_size,
                server,
                table,
                counters,
                dialer,
                events: Mutex::new(Some(events)),
                groups: Arc::new(Mutex::new(HashMap::new())),
                membership,
                heartbeats,
                beating: Mutex::new(Some(beating)),
                leave_acks,
                leave_timeout: config.leave_timeout,
                handover_timeout: config.handover_timeout,
                refused,
                acceptor,
                accepting: Mutex::new(Some(accepting)),
            }),
        })
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The address the node listens on, with the port resolved.
    pub fn listen_addr(&self) -> SocketAddr {
        self.inner.listen_addr
    }

    /// The peers that are members in herd's view (see [`Node::subscribe`]), sorted. This
    /// node is not included; [`Node::cluster_members`] includes it.
    pub fn members(&self) -> Vec<String> {
        self.inner.membership.members().into_iter().collect()
    }

    /// Every member including this node, sorted: the same list on every node that sees the
    /// same membership, for products that compute an answer from it (placement, ownership).
    pub fn cluster_members(&self) -> Vec<String> {
        let mut all = self.inner.membership.members();
        all.insert(self.inner.name.clone());
        all.into_iter().collect()
    }

    /// The current members and the stream of every later change, taken atomically: an event
    /// is either already reflected in [`Subscription::members`] or delivered on
    /// [`Subscription::events`], never both, never neither.
    ///
    /// Membership is herd's view, not ractor's sessions: a duplicate-connection election or a
    /// reconnect within [`DetectorConfig::reconnect_grace`](super::DetectorConfig) produces no
    /// event, and for each node name `Up` and `Down` alternate. See the book's chapter
    /// "Membership and failure detection".
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(node: herd::cluster::Node) {
    /// use herd::cluster::MemberEvent;
    /// let mut sub = node.subscribe();
    /// println!("members now: {:?}", sub.members);
    /// while let Ok(event) = sub.events.recv().await {
    ///     match event {
    ///         MemberEvent::Up { node } => println!("{node} is up"),
    ///         MemberEvent::Down { node, reason } => println!("{node} is down: {reason:?}"),
    ///         _ => {}
    ///     }
    /// }
    /// # }
    /// ```
    pub fn subscribe(&self) -> Subscription {
        self.inner.membership.subscribe()
    }

    /// Every peer this node has seen, with its state (up, suspected, down) and the failure
    /// detector's figures.
    pub fn peers(&self) -> Vec<PeerStatus> {
        self.inner.membership.status()
    }

    /// The largest payload this node sends or accepts (its config's `max_message_size`).
    pub fn max_message_size(&self) -> usize {
        self.inner.max_message_size
    }

    /// Session and heartbeat counters since the node started, and message counters of the
    /// groups it is in.
    pub fn stats(&self) -> ClusterStats {
        let hb = self.inner.heartbeats.stats();
        let groups: Vec<GroupStats> = lock(&self.inner.groups)
            .values()
            .map(Group::stats)
            .chain(std::iter::once(hb.clone()))
            .collect();
        let sum = |f: fn(&GroupStats) -> u64| groups.iter().map(f).sum::<u64>();
        ClusterStats {
            frames_sent: sum(|g| g.frames_sent),
            bytes_sent: sum(|g| g.bytes_sent),
            frames_received: sum(|g| g.frames_received),
            bytes_received: sum(|g| g.bytes_received),
            heartbeats_sent: hb.frames_sent,
            heartbeat_bytes_sent: hb.bytes_sent,
            heartbeats_received: hb.frames_received,
            detector_pauses: self.inner.membership.pauses(),
            closed_before_auth: self
                .inner
                .acceptor
                .counters
                .closed_preauth
                .load(Ordering::Relaxed),
            ..self.inner.counters.snapshot()
        }
    }

    /// Resolves when a peer refuses this node because another live node already uses its
    /// name ([`ClusterError::NameTaken`]); never otherwise. The node then stops dialing:
    /// shut it down and start it again under a unique name.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only watches.
    pub async fn refused(&self) -> ClusterError {
        let mut rx = self.inner.refused.subscribe();
        loop {
            if let Some((by, existing)) = rx.borrow_and_update().clone() {
                return ClusterError::NameTaken {
                    name: self.inner.name.clone(),
                    by,
                    existing,
                };
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// The session table (node_id -> peer name), for the actor registry.
    pub(crate) fn session_table(&self) -> &Mutex<SessionTable> {
        &self.inner.table
    }

    pub(crate) fn session_table_arc(&self) -> &Arc<Mutex<SessionTable>> {
        &self.inner.table
    }

    pub(crate) fn membership(&self) -> &Arc<Membership> {
        &self.inner.membership
    }

    /// What a replica's graceful leave needs to know about this node, without keeping the
    /// node alive (no `Arc<Inner>` inside: the hook lives in a group the node owns).
    pub(crate) fn handover_probe(&self) -> HandoverProbe {
        HandoverProbe {
            table: Arc::clone(&self.inner.table),
            has_seeds: !self.inner.dialer.seeds.is_empty(),
            timeout: self.inner.handover_timeout,
            refused: self.inner.refused.subscribe(),
        }
    }

    /// Joins group `group` on this node: starts its endpoint actor, which every other node's
    /// endpoint of the same group sees as a member.
    ///
    /// `on_event` is called from the endpoint actor, in order: a
    /// [`GroupEvent::Members`] right away and after every membership change, and a
    /// [`GroupEvent::Message`] for every accepted message. It must not block (forward to a
    /// channel or an actor); a panic in it is caught and logged.
    ///
    /// # Errors
    ///
    /// [`ClusterError::AlreadyJoined`] if this node is already in `group`,
    /// [`ClusterError::Spawn`] if the endpoint cannot start, [`ClusterError::ShutDown`] after
    /// [`Node::shutdown`].
    pub async fn join_group(
        &self,
        group: &str,
        on_event: Box<dyn Fn(GroupEvent) + Send + Sync + 'static>,
    ) -> Result<Group, ClusterError> {
        if lock(&self.inner.events).is_none() {
            return Err(ClusterError::ShutDown);
        }
        if group.starts_with(RESERVED_PREFIX) {
            return Err(ClusterError::ReservedGroup {
                group: group.to_string(),
            });
        }
        if lock(&self.inner.groups).contains_key(group) {
            return Err(ClusterError::AlreadyJoined {
                group: group.to_string(),
            });
        }
        let g = group::start(
            group,
            &self.inner.name,
            self.inner.max_message_size,
            on_event,
            Arc::downgrade(&self.inner.groups),
            Some(self.inner.membership.activity_hook()),
        )
        .await?;
        lock(&self.inner.groups).insert(group.to_string(), g.clone());
        Ok(g)
    }

    /// Stops the node: hands each group's data over (replicas ship what their neighbours
    /// lack, bounded by [`NodeConfig::handover_timeout`]), announces the leave so that peers
    /// report this node Down at once (waiting up to [`NodeConfig::leave_timeout`] for their
    /// acknowledgements), leaves every group, stops dialing, closes every session and the
    /// listener. Idempotent.
    pub async fn shutdown(&self) {
        let events = lock(&self.inner.events).take();
        let Some(events) = events else { return };
        let groups: Vec<Group> = lock(&self.inner.groups).drain().map(|(_, g)| g).collect();
        let mut handovers = tokio::task::JoinSet::new();
        for g in &groups {
            let g = g.clone();
            handovers.spawn(async move { g.hand_over().await });
        }
        while handovers.join_next().await.is_some() {}
        // A refused node never was a member: a leave announced under its name would be
        // taken for the leave of the node that holds the name.
        if self.inner.refused.borrow().is_none() {
            let missing = heartbeat::announce_leave(
                &self.inner.heartbeats,
                &self.inner.leave_acks,
                self.inner.leave_timeout,
            )
            .await;
            if !missing.is_empty() {
                tracing::debug!(?missing, "peers did not acknowledge the leave in time");
            }
        }
        self.inner.dialer.stop();
        if let Some(accepting) = lock(&self.inner.accepting).take() {
            accepting.abort();
        }
        if let Some(beating) = lock(&self.inner.beating).take() {
            beating.abort();
        }
        for g in groups {
            g.leave().await;
        }
        self.inner.heartbeats.leave().await;
        let _ = self
            .inner
            .server
            .cast(NodeServerMessage::UnsubscribeToEvents("herd".to_string()));
        events.abort();
        let server = &self.inner.server;
        // Stop the server before its children (listener, sessions): stopping the listener
        // first makes the server log an error and respawn it. The server does not stop its
        // children when it stops, so they are stopped afterwards.
        let children = server.get_children();
        let _ = server
            .stop_and_wait(Some("herd node shutdown".into()), Some(STOP_TIMEOUT))
            .await;
        for child in children {
            let _ = child
                .stop_and_wait(Some("herd node shutdown".into()), Some(STOP_TIMEOUT))
                .await;
        }
        tracing::info!(node = %self.inner.name, "node stopped");
    }
}

/// What a graceful leave asks the node: are its peers connected and synced?
#[derive(Clone)]
pub(crate) struct HandoverProbe {
    table: Arc<Mutex<SessionTable>>,
    has_seeds: bool,
    /// [`NodeConfig::handover_timeout`].
    pub(crate) timeout: Duration,
    refused: watch::Receiver<Option<(String, String)>>,
}

impl HandoverProbe {
    /// `Some(true)` when this node has peers and every session to them finished its
    /// initial sync (their pg groups are known here); `Some(false)` while a session is still
    /// syncing; `None` when it has no peer at all — then the leave cannot hand anything over,
    /// and waiting makes sense only if seeds may still answer (`has_seeds`).
    pub(crate) fn peers_synced(&self) -> Option<bool> {
        if self.refused.borrow().is_some() {
            // Not a member of anything: nothing to hand over to.
            return None;
        }
        let (all_ready, n) = lock(&self.table).all_ready();
        (n > 0).then_some(all_ready)
    }

    /// Whether the node has seeds to wait for (not once it was refused).
    pub(crate) fn has_seeds(&self) -> bool {
        self.has_seeds && self.refused.borrow().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_dialable() {
        assert_eq!(advertised_host("127.0.0.1".parse().unwrap()), "127.0.0.1");
        let v6 = advertised_host("::1".parse().unwrap());
        assert_eq!(v6, "[::1]");
        assert!(format!("{v6}:4000").parse::<SocketAddr>().is_ok());
    }
}
