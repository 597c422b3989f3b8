//! The node's event loop: ractor_cluster's session events in, herd's bookkeeping out —
//! the session table, the counters, membership, the acceptor's limits, redials, and the
//! refusal of a second process using a taken name.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor_cluster::NodeEventSubscription;
use ractor_cluster::node::NodeServerSessionInformation;
use tokio::sync::mpsc;

use super::acceptor::Acceptor;
use super::group::Group;
use super::heartbeat;
use super::lock;
use super::members::node_of_peer;
use super::membership::Membership;
use super::node::Counters;
use super::ratelimit::RateLimited;
use super::reconnect::Dialer;
use super::sessions::{Auth, Closed, SessionTable};

/// Node events, forwarded out of the NodeServer (its callbacks must not block).
#[derive(Debug)]
pub(crate) enum NodeEvent {
    Opened(NodeServerSessionInformation),
    Authenticated(NodeServerSessionInformation),
    Ready(NodeServerSessionInformation),
    Disconnected(NodeServerSessionInformation),
}

/// Forwards node events to the event loop. Also lifts the acceptor's pre-authentication
/// limits right here, in the NodeServer's own callback: the peer's first messages after
/// authentication can follow within a round trip, sooner than the event loop would see it.
pub(crate) struct Forward(
    pub(crate) mpsc::UnboundedSender<NodeEvent>,
    pub(crate) Arc<Acceptor>,
);

impl NodeEventSubscription for Forward {
    fn node_session_opened(&self, ses: NodeServerSessionInformation) {
        let _ = self.0.send(NodeEvent::Opened(ses));
    }
    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        let _ = self.0.send(NodeEvent::Disconnected(ses));
    }
    fn node_session_authenticated(&self, ses: NodeServerSessionInformation) {
        if ses.is_server {
            self.1.authenticated(&ses.peer_addr);
        }
        let _ = self.0.send(NodeEvent::Authenticated(ses));
    }
    fn node_session_ready(&self, ses: NodeServerSessionInformation) {
        let _ = self.0.send(NodeEvent::Ready(ses));
    }
}

/// At most one log line per this period about refused sessions (more are counted).
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(1);

/// How long a refused duplicate's session may take to finish its initial sync (so that its
/// heartbeat endpoint can be told why) before it is closed anyway.
const DUPLICATE_NOTICE_WAIT: Duration = Duration::from_secs(1);

/// Closes session `node_id`, which belongs to a second process using a live node's name.
/// With `notice` (the address of the node holding the name), first tells that process why
/// (through its heartbeat endpoint, once its stand-in exists), so that it stops dialing and
/// reports the refusal.
async fn refuse_duplicate(
    node_id: u64,
    notice: Option<String>,
    table: Arc<Mutex<SessionTable>>,
    membership: Arc<Membership>,
    heartbeats: Arc<std::sync::OnceLock<Group>>,
) {
    let deadline = tokio::time::Instant::now() + DUPLICATE_NOTICE_WAIT;
    let mut told = false;
    while let Some(existing) = &notice
        && tokio::time::Instant::now() < deadline
    {
        if lock(&table).is_ready(node_id)
            && let Some(hb) = heartbeats.get()
        {
            let notice = heartbeat::encode(&heartbeat::Beat::NameTaken {
                existing: existing.clone(),
            });
            for cell in hb.cells_of_session(node_id) {
                told |= hb.send_to_cell(cell, &notice).is_ok();
            }
            if told {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if told {
        // Let the notice leave before the session closes.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    membership.close_session(node_id);
}

/// Turns session events into the session table, the counters and redials.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn event_loop(
    me: String,
    listen_addr: SocketAddr,
    acceptor: Arc<Acceptor>,
    mut rx: mpsc::UnboundedReceiver<NodeEvent>,
    table: Arc<Mutex<SessionTable>>,
    counters: Arc<Counters>,
    dialer: Arc<Dialer>,
    membership: Arc<Membership>,
    heartbeats: Arc<std::sync::OnceLock<Group>>,
) {
    let refused_log = RateLimited::new(REFUSED_LOG_EVERY);
    let conflict_log = RateLimited::new(REFUSED_LOG_EVERY);
    while let Some(evt) = rx.recv().await {
        let now = tokio::time::Instant::now();
        match evt {
            NodeEvent::Opened(s) => {
                counters.sessions_opened.fetch_add(1, Ordering::Relaxed);
                membership.session_opened(s.node_id, s.actor.clone());
                tracing::debug!(node_id = s.node_id, peer_addr = %s.peer_addr, inbound = s.is_server, "session opened");
                lock(&table).opened(s.node_id, s.peer_addr, !s.is_server);
            }
            NodeEvent::Authenticated(s) => {
                if s.is_server {
                    acceptor.authenticated(&s.peer_addr);
                }
                counters
                    .sessions_authenticated
                    .fetch_add(1, Ordering::Relaxed);
                let Some(peer) = &s.peer_name else {
                    tracing::warn!(node_id = s.node_id, "authenticated session without a name");
                    continue;
                };
                let name = node_of_peer(&peer.name).to_string();
                let own_name = name == me;
                let auth = if own_name {
                    // Another process uses this node's own name. Which of the two came first
                    // is not known here, so it is closed without telling it to stop: a third
                    // node that holds the name tells the newcomer.
                    Auth::Conflict {
                        existing: listen_addr.to_string(),
                    }
                } else {
                    lock(&table).authenticated(
                        s.node_id,
                        name.clone(),
                        peer.connection_string.clone(),
                        s.peer_addr.clone(),
                        !s.is_server,
                    )
                };
                match auth {
                    Auth::New => {
                        tracing::debug!(peer = %name, addr = %peer.connection_string, "peer connected");
                        membership.session_named(s.node_id, &name);
                        membership.peer_live(now, &name);
                    }
                    Auth::Known => {
                        // Usually a second session of the same process (no event). It can
                        // also be the same node restarted on the same address before its
                        // old session's close was processed: after a leave or a Down it
                        // must come back Up, so the detector hears of it either way.
                        membership.session_named(s.node_id, &name);
                        membership.peer_live(now, &name);
                    }
                    Auth::Conflict { existing } => {
                        if let Some(held) = conflict_log.allow(now) {
                            tracing::error!(peer = %name, addr = %peer.connection_string, %existing, held_back = held, "refusing a second node named {name}: a node with that name is already a member");
                        }
                        tokio::spawn(refuse_duplicate(
                            s.node_id,
                            (!own_name).then_some(existing),
                            Arc::clone(&table),
                            Arc::clone(&membership),
                            Arc::clone(&heartbeats),
                        ));
                    }
                }
            }
            NodeEvent::Ready(s) => {
                lock(&table).ready(s.node_id);
            }
            NodeEvent::Disconnected(s) => {
                if s.is_server {
                    acceptor.closed(&s.peer_addr);
                }
                membership.session_closed(s.node_id);
                let closed = lock(&table).disconnected(s.node_id);
                match closed {
                    Closed::Refused => {
                        counters.sessions_refused.fetch_add(1, Ordering::Relaxed);
                        if let Some(held) = refused_log.allow(now) {
                            tracing::warn!(node_id = s.node_id, peer_addr = %s.peer_addr, held_back = held, "session closed before authenticating (wrong cookie, duplicate connection or failed handshake)");
                        }
                    }
                    Closed::Lost {
                        name,
                        conn,
                        still_live,
                    } => {
                        counters.disconnects.fetch_add(1, Ordering::Relaxed);
                        if still_live {
                            tracing::debug!(peer = %name, node_id = s.node_id, "a duplicate session closed; peer still up");
                        } else {
                            tracing::debug!(peer = %name, "last session to the peer closed");
                            membership.peer_lost(now, &name);
                            dialer.peer_down(&name, conn.as_deref());
                        }
                    }
                }
            }
        }
        dialer.notify();
    }
}
