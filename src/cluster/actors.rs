//! Actors reachable across nodes: publish a user's actor under a name, resolve the name on
//! any node to something to `cast`/`call`, learn which node hosts it, and watch it come and
//! go — on ractor's own mechanisms, not a second transport.
//!
//! A published actor joins the pg group `herd.actor:{name}`. ractor_cluster mirrors it to
//! every connected node as a *remote stand-in* (an `ActorCell` whose messages are serialized
//! to the real actor over the session), so resolving is reading the pg group; the hosting
//! node is the session the stand-in came through (its `ActorId::Remote { node_id, .. }`),
//! mapped to a node name by the session table.
//!
//! The actor's message type must be one ractor_cluster can serialize
//! (`#[derive(RactorClusterMessage)]`, with `#[rpc]` variants for calls). ractor cannot
//! check the type of a remote actor: a name must always be used with one message type
//! (a message of another type is dropped on the far side). A stand-in is valid for one
//! session: resolve again after a reconnect rather than keeping an old [`Located`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use ractor::pg::{self, GroupChangeMessage};
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::mpsc;

use super::ClusterError;
use super::membership::Membership;
use super::sessions::SessionTable;
use super::{Node, lock};

/// The pg group of published name `name`.
fn actor_group(name: &str) -> String {
    format!("herd.actor:{name}")
}

/// A published actor found by name: the node hosting it and a reference to send to (a
/// remote stand-in when the node is another one).
#[derive(Debug)]
pub struct Located<M: ractor::Message> {
    /// The node hosting the actor.
    pub node: String,
    /// Where to `cast`/`call`. For a remote actor, `Ok` from a send means queued on the
    /// session, not delivered; use `call` with a timeout for an answer.
    pub actor: ActorRef<M>,
}

/// Why a watched actor is no longer reachable on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActorGone {
    /// It stopped, or was unpublished, while its node stayed connected.
    Stopped,
    /// The connection to its node closed: the node crashed, left, or was declared down by
    /// the failure detector (see [`Node::subscribe`] for which).
    NodeDown,
}

/// A change of where a published name can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActorEvent {
    /// An actor under the name is reachable on `node`.
    Up {
        /// The hosting node.
        node: String,
    },
    /// The actor under the name on `node` is no longer reachable.
    Down {
        /// The node that hosted it.
        node: String,
        /// Why.
        reason: ActorGone,
    },
}

/// What [`Node::watch_actor`] returns: the stream of [`ActorEvent`]s for one name. Dropping
/// it stops the watch.
#[derive(Debug)]
pub struct ActorWatch {
    /// The events, in order, starting with an `Up` for each node already hosting the name.
    pub events: mpsc::UnboundedReceiver<ActorEvent>,
    watcher: ActorRef<WatchMsg>,
}

impl Drop for ActorWatch {
    fn drop(&mut self) {
        self.watcher.stop(None);
    }
}

/// The node name of a pg member: this node for a local actor, else the session's peer.
fn node_of(cell: &ActorCell, me: &str, table: &Mutex<SessionTable>) -> Option<String> {
    match cell.get_id() {
        ActorId::Local(_) => Some(me.to_string()),
        ActorId::Remote { node_id, .. } => lock(table).name_of(node_id),
    }
}

impl Node {
    /// Makes `actor` reachable from every node under `name` (several nodes may publish the
    /// same name; [`resolve`](Self::resolve) lists them all). It stays published until it
    /// stops or [`unpublish`](Self::unpublish) is called.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NotLocal`] if `actor` is a stand-in for an actor of another node.
    pub fn publish<M: ractor::Message>(
        &self,
        name: &str,
        actor: &ActorRef<M>,
    ) -> Result<(), ClusterError> {
        if !actor.get_id().is_local() {
            return Err(ClusterError::NotLocal {
                name: name.to_string(),
            });
        }
        pg::join(actor_group(name), vec![actor.get_cell()]);
        Ok(())
    }

    /// Stops publishing `actor` under `name`; watchers on other nodes see it go
    /// ([`ActorGone::Stopped`]).
    pub fn unpublish<M: ractor::Message>(&self, name: &str, actor: &ActorRef<M>) {
        pg::leave(actor_group(name), vec![actor.get_cell()]);
    }

    /// Every actor published under `name` that this node can reach now, with its node,
    /// sorted by node name (this node's own included).
    ///
    /// `M` must be the message type the actor was published with; ractor cannot check it
    /// for a remote actor.
    pub fn resolve<M: ractor::Message>(&self, name: &str) -> Vec<Located<M>> {
        let me = self.name();
        let mut found: Vec<Located<M>> = pg::get_members(&actor_group(name))
            .into_iter()
            .filter_map(|cell| {
                let node = node_of(&cell, me, self.session_table())?;
                Some(Located {
                    node,
                    actor: ActorRef::<M>::from(cell),
                })
            })
            .collect();
        found.sort_by(|a, b| a.node.cmp(&b.node));
        found
    }

    /// The nodes hosting an actor published under `name`, sorted.
    pub fn locate(&self, name: &str) -> BTreeSet<String> {
        let me = self.name();
        pg::get_members(&actor_group(name))
            .iter()
            .filter_map(|cell| node_of(cell, me, self.session_table()))
            .collect()
    }

    /// Watches `name`: an [`ActorEvent::Up`] for each node hosting it now and whenever one
    /// starts to, an [`ActorEvent::Down`] when one stops or its node's connection closes.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Spawn`] if the watching actor cannot start.
    pub async fn watch_actor(&self, name: &str) -> Result<ActorWatch, ClusterError> {
        let (tx, events) = mpsc::unbounded_channel();
        let watcher = Watcher {
            group: actor_group(name),
            me: self.name().to_string(),
            table: Arc::clone(self.session_table_arc()),
            membership: Arc::clone(self.membership()),
            tx,
        };
        let (watcher, _) =
            Actor::spawn(None, watcher, ())
                .await
                .map_err(|e| ClusterError::Spawn {
                    group: actor_group(name),
                    reason: e.to_string(),
                })?;
        Ok(ActorWatch { events, watcher })
    }
}

/// The watcher's message: it has none of its own (it only receives pg notifications). A
/// local-only type, so ractor never advertises the watcher to other nodes.
#[derive(ractor_cluster::RactorMessage)]
pub(crate) struct WatchMsg;

struct Watcher {
    group: String,
    me: String,
    table: Arc<Mutex<SessionTable>>,
    membership: Arc<Membership>,
    tx: mpsc::UnboundedSender<ActorEvent>,
}

/// Per node, the stand-ins through which the name is reachable (more than one while a
/// reconnect overlaps the old session).
type Reach = BTreeMap<String, BTreeSet<ActorId>>;

/// How often a watcher retries stand-ins whose session it could not name yet.
const RETRY: std::time::Duration = std::time::Duration::from_millis(20);
/// How many times, before it gives up on one.
const RETRIES: u32 = 250;

/// The watcher's state.
#[derive(Default)]
struct WatchState {
    reach: Reach,
    /// Stand-ins whose session the node's event loop has not named yet (a pg join can be
    /// seen before the session's authentication is), with the retries left.
    unnamed: Vec<(ActorCell, u32)>,
}

impl Watcher {
    /// Records joined cells; returns those whose node is not known yet.
    fn joined(&self, reach: &mut Reach, cells: &[ActorCell]) -> Vec<ActorCell> {
        let mut unnamed = Vec::new();
        for cell in cells {
            let Some(node) = node_of(cell, &self.me, &self.table) else {
                unnamed.push(cell.clone());
                continue;
            };
            let ids = reach.entry(node.clone()).or_default();
            if ids.is_empty() {
                let _ = self.tx.send(ActorEvent::Up { node });
            }
            ids.insert(cell.get_id());
        }
        unnamed
    }

    /// Queues `cells` for a retry.
    fn retry_later(
        &self,
        myself: &ActorRef<WatchMsg>,
        state: &mut WatchState,
        cells: Vec<ActorCell>,
    ) {
        if cells.is_empty() {
            return;
        }
        let first = state.unnamed.is_empty();
        state
            .unnamed
            .extend(cells.into_iter().map(|c| (c, RETRIES)));
        if first {
            myself.send_after(RETRY, || WatchMsg);
        }
    }

    fn left(&self, state: &mut WatchState, cells: &[ActorCell]) {
        let reach = &mut state.reach;
        for cell in cells {
            let id = cell.get_id();
            state.unnamed.retain(|(c, _)| c.get_id() != id);
            let Some(node) = reach
                .iter()
                .find(|(_, ids)| ids.contains(&id))
                .map(|(n, _)| n.clone())
            else {
                continue;
            };
            let Some(ids) = reach.get_mut(&node) else {
                continue;
            };
            ids.remove(&id);
            if ids.is_empty() {
                reach.remove(&node);
                // A stand-in leaves either because the remote actor stopped (its session
                // lives on) or because its session is closing (and takes its stand-ins).
                let reason = match id {
                    ActorId::Remote { node_id, .. } if !self.membership.session_alive(node_id) => {
                        ActorGone::NodeDown
                    }
                    _ => ActorGone::Stopped,
                };
                let _ = self.tx.send(ActorEvent::Down { node, reason });
            }
        }
    }
}

impl Actor for Watcher {
    type Msg = WatchMsg;
    type State = WatchState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        // Monitor first, then read: a member joining in between is seen twice, which the
        // per-node sets absorb.
        pg::monitor(self.group.clone(), myself.get_cell());
        let mut state = WatchState::default();
        let unnamed = self.joined(&mut state.reach, &pg::get_members(&self.group));
        self.retry_later(&myself, &mut state, unnamed);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        _retry: WatchMsg,
        state: &mut WatchState,
    ) -> Result<(), ActorProcessingErr> {
        let current: BTreeSet<ActorId> = pg::get_members(&self.group)
            .iter()
            .map(ActorCell::get_id)
            .collect();
        let due = std::mem::take(&mut state.unnamed);
        for (cell, left) in due {
            if !current.contains(&cell.get_id()) {
                continue;
            }
            if self
                .joined(&mut state.reach, std::slice::from_ref(&cell))
                .is_empty()
            {
                continue;
            }
            if left > 1 {
                state.unnamed.push((cell, left - 1));
            } else {
                tracing::warn!(group = %self.group, id = ?cell.get_id(), "cannot tell which node hosts a published actor; ignored");
            }
        }
        if !state.unnamed.is_empty() {
            myself.send_after(RETRY, || WatchMsg);
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut WatchState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ProcessGroupChanged(change) = evt {
            match change {
                GroupChangeMessage::Join(scope, group, cells)
                    if scope == pg::DEFAULT_SCOPE && group == self.group =>
                {
                    let unnamed = self.joined(&mut state.reach, &cells);
                    self.retry_later(&myself, state, unnamed);
                }
                GroupChangeMessage::Leave(scope, group, cells)
                    if scope == pg::DEFAULT_SCOPE && group == self.group =>
                {
                    self.left(state, &cells);
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        _: &mut WatchState,
    ) -> Result<(), ActorProcessingErr> {
        pg::demonitor(self.group.clone(), myself.get_id());
        Ok(())
    }
}
