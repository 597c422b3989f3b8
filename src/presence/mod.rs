//! Presence: who is where, across the cluster, bound to the life of actors (Phoenix.Tracker
//! in Rust).
//!
//! # The model
//! A node **tracks** one of its own actors under a topic and a key, with a meta value: "user
//! 42 is in room `lobby`, on this node, with meta `{status: away}`". Every node can
//! [`list`](Presence::list) a topic (each key with every place it is tracked from) and
//! [`subscribe`](Presence::subscribe) to joins and leaves.
//!
//! # Owned entries, a local view
//! Following `DESIGN.md` ("Owned entries"):
//! * **An entry is written only by the node that tracks it**, tagged with that node's name and
//!   **incarnation** (a fresh id per start of the presence; it lives in memory, since what it
//!   describes, live actors, dies with the process). There is no API to touch another node's
//!   entry (phoenix_pubsub#184).
//! * **What shows is decided locally**, from the replicated entries and this node's view of
//!   the cluster: an entry shows while its node is live here (this node, or a member hosting
//!   this presence) and its incarnation is that node's latest. Nothing is written when a node
//!   goes down: its entries stop showing at once on every survivor that sees it go, and show
//!   again, without any write, when it comes back from a partition with the same incarnation.
//! * **No ghosts:** a restarted node announces a new incarnation; from then on the old one's
//!   entries never show anywhere, and the new incarnation removes them from the map when they
//!   reach it (the causal context keeps them removed, however late a copy arrives).
//! * **Bound to the actor:** a tracked actor is monitored (ractor monitors); when it stops
//!   or fails its entries are untracked.
//!
//! # Diffs
//! Joins and leaves come from changes of what shows, computed locally: for each tracked entry,
//! subscribers see join, leave, join... in order, starting with a join (a partition shows as a
//! leave then a join). An [`update`](Presence::update) of the meta shows as a leave of the old
//! meta and a join of the new one, as in Phoenix. Remote subscribers may skip intermediate
//! metas of quick successive updates: they always end on the last one.
//!
//! # Not yet
//! Entries of a node that never comes back stay in the map, hidden; purging them after a
//! "permanently down" period is left for later. Liveness follows the cluster's member list of
//! this presence's replica (connection-based).

mod view;

#[cfg(test)]
mod tests;

use crate::cluster::Node;
use crate::crdt::AwLwwMap;
use crate::replica::{Diff, Replica, ReplicaError, ReplicaOptions, Subscription, Update};
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use thiserror::Error;
use tokio::sync::mpsc;
use view::{Current, Subscriber, View};

/// Where a record lives in the replicated map.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Slot {
    /// A node's incarnation record, written once by that incarnation when it starts.
    Incarnation {
        /// The node's name.
        node: SmolStr,
        /// The incarnation.
        incarnation: u64,
    },
    /// One track.
    Entry {
        /// The topic.
        topic: SmolStr,
        /// The key within the topic.
        key: SmolStr,
        /// The tracking node.
        node: SmolStr,
        /// Its incarnation.
        incarnation: u64,
        /// Unique within the incarnation.
        id: u64,
    },
}

/// A record of the replicated map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Record<M> {
    /// An incarnation started at this wall-clock time (ms since the Unix epoch). Its node
    /// writes it again, `seq` one higher, whenever a node joins its view (with `ask`): that
    /// is how a node coming back tells the others that this incarnation is still the one
    /// running. It writes it again (without `ask`) when it sees another node's record
    /// written with `ask`: the other node may have seen it go when it itself saw nothing (a
    /// reconnect in which one of two sessions was closed), and hides its entries until it
    /// writes again.
    Started {
        /// When.
        at_ms: u64,
        /// How many times it was written before.
        seq: u64,
        /// Whether the other nodes are asked to write their records again.
        ask: bool,
    },
    /// A track's meta.
    Meta(M),
}

/// What meta values must be: replicated with serde, compared to tell updates apart.
pub trait Meta:
    Clone + PartialEq + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
}
impl<T: Clone + PartialEq + Debug + Serialize + DeserializeOwned + Send + Sync + 'static> Meta
    for T
{
}

/// The replica under a [`Presence`].
pub type PresenceReplica<M> = Replica<AwLwwMap<Slot, Record<M>>>;

/// Names one track; returned by [`Presence::track`], needed to untrack or update it. Only the
/// node that tracked can use it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrackRef {
    slot: Slot,
}

impl TrackRef {
    /// The node that tracks.
    pub fn node(&self) -> &str {
        match &self.slot {
            Slot::Entry { node, .. } | Slot::Incarnation { node, .. } => node,
        }
    }

    fn owner(&self) -> (&str, u64) {
        match &self.slot {
            Slot::Entry {
                node, incarnation, ..
            }
            | Slot::Incarnation { node, incarnation } => (node, *incarnation),
        }
    }
}

/// One place a key is tracked from.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement<M> {
    /// The node that tracks it.
    pub node: String,
    /// Its meta.
    pub meta: M,
    /// The track.
    pub track: TrackRef,
}

/// A change of what a topic shows.
#[derive(Debug, Clone, PartialEq)]
pub enum PresenceDiff<M> {
    /// `key` is now tracked from `placement` (a track, an update's new meta, or a node that
    /// came back).
    Join {
        /// The topic.
        topic: String,
        /// The key.
        key: String,
        /// Where.
        placement: Placement<M>,
    },
    /// `key` is no longer tracked from `placement` (an untrack, the actor stopped, an
    /// update's old meta, or its node went down).
    Leave {
        /// The topic.
        topic: String,
        /// The key.
        key: String,
        /// Where.
        placement: Placement<M>,
    },
}

impl<M> PresenceDiff<M> {
    /// The topic the diff is about.
    pub fn topic(&self) -> &str {
        match self {
            PresenceDiff::Join { topic, .. } | PresenceDiff::Leave { topic, .. } => topic,
        }
    }
}

/// Why a presence call failed. Nothing was changed unless a variant says so.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PresenceError {
    /// The replica refused (a meta too large for a sync message, storage, the actor).
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// The track was made by another node or incarnation: only its owner may change it.
    #[error("track {0:?} is not owned by this node's presence")]
    NotOwned(TrackRef),
    /// The presence's watcher actor could not start.
    #[error("starting the presence watcher: {0}")]
    Watcher(#[source] ractor::SpawnErr),
}

struct Inner<M: Meta> {
    replica: PresenceReplica<M>,
    node: SmolStr,
    incarnation: u64,
    started_ms: u64,
    /// Writes of this incarnation's record so far.
    announced: AtomicU64,
    next_id: AtomicU64,
    view: Mutex<View<M>>,
    /// Local tracks by actor, to untrack them when the actor stops.
    by_actor: Mutex<HashMap<ActorId, Vec<Slot>>>,
    monitor: ActorRef<MonitorMsg>,
}

/// Presence over one replicated map. Cheap to clone; every clone is the same presence.
///
/// # Examples
/// ```no_run
/// use herd::cluster::{Node, NodeConfig};
/// use herd::presence::Presence;
/// use herd::replica::ReplicaOptions;
///
/// # async fn run(actor: ractor::ActorCell) -> Result<(), Box<dyn std::error::Error>> {
/// let node = Node::start(NodeConfig::new("a")).await?;
/// let presence: Presence<String> = Presence::start(&node, ReplicaOptions::new("presence")).await?;
/// let mut diffs = presence.subscribe(Some("lobby"));
/// presence.track(&actor, "lobby", "user-42", "online".to_string()).await?;
/// println!("{:?}", presence.list("lobby")); // user-42 tracked from "a"
/// println!("{:?}", diffs.recv().await); // Join
/// # Ok(()) }
/// ```
pub struct Presence<M: Meta> {
    inner: Arc<Inner<M>>,
    /// Stops the background task when the last handle goes.
    _task: Arc<TaskGuard>,
}

impl<M: Meta> Clone for Presence<M> {
    fn clone(&self) -> Self {
        Presence {
            inner: self.inner.clone(),
            _task: self._task.clone(),
        }
    }
}

struct TaskGuard(tokio::task::JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<M: Meta> Presence<M> {
    /// Starts a presence on `node`: its replica (in memory: `options.storage` is ignored, since
    /// tracks describe live actors), its incarnation record and its watcher.
    ///
    /// # Errors
    /// The replica's start errors; [`PresenceError::Watcher`].
    pub async fn start(node: &Node, options: ReplicaOptions) -> Result<Self, PresenceError> {
        let replica = PresenceReplica::<M>::start(node, in_memory(options)).await?;
        Self::over(replica, node.name().to_owned()).await
    }

    /// Like [`start`](Self::start) without a cluster: `node_name` names this node, and the
    /// replica's neighbours are set by hand.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn start_local(
        node_name: &str,
        options: ReplicaOptions,
    ) -> Result<Self, PresenceError> {
        let replica = PresenceReplica::<M>::start_local(in_memory(options)).await?;
        Self::over(replica, node_name.to_owned()).await
    }

    async fn over(replica: PresenceReplica<M>, node: String) -> Result<Self, PresenceError> {
        let incarnation = replica.id().as_u64();
        let (died_tx, died_rx) = mpsc::unbounded_channel();
        let (monitor, _) = Actor::spawn(None, Monitor, died_tx)
            .await
            .map_err(PresenceError::Watcher)?;
        let mut view = View::new(&node);
        view.record_incarnation(
            &node,
            Current {
                started_ms: wall_ms(),
                incarnation,
            },
        );
        let started = view.current[node.as_str()].started_ms;
        let diffs = replica.subscribe_deep(crate::replica::PRODUCT_DIFF_QUEUE);
        let inner = Arc::new(Inner {
            replica,
            node: node.into(),
            incarnation,
            started_ms: started,
            announced: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            view: Mutex::new(view),
            by_actor: Mutex::new(HashMap::new()),
            monitor,
        });
        announce(&inner, true).await?;
        let task = tokio::spawn(run(inner.clone(), diffs, died_rx));
        Ok(Presence {
            inner,
            _task: Arc::new(TaskGuard(task)),
        })
    }

    /// Tracks `actor` (one of this node's) under `topic` and `key` with `meta`, until
    /// [`untrack`](Self::untrack) or until the actor stops.
    ///
    /// # Errors
    /// [`PresenceError::Replica`] (e.g. a meta too large for a sync message); nothing tracked.
    pub async fn track(
        &self,
        actor: &ActorCell,
        topic: impl Into<SmolStr>,
        key: impl Into<SmolStr>,
        meta: M,
    ) -> Result<TrackRef, PresenceError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Slot::Entry {
            topic: topic.into(),
            key: key.into(),
            node: self.inner.node.clone(),
            incarnation: self.inner.incarnation,
            id,
        };
        self.inner
            .replica
            .put(slot.clone(), Record::Meta(meta))
            .await?;
        lock(&self.inner.by_actor)
            .entry(actor.get_id())
            // Capacity 1: one actor per track is the common case, and a vector's first
            // growth makes room for four slots.
            .or_insert_with(|| Vec::with_capacity(1))
            .push(slot.clone());
        let _ = self.inner.monitor.cast(MonitorMsg::Watch(actor.clone()));
        if matches!(
            actor.get_status(),
            ractor::ActorStatus::Stopped | ractor::ActorStatus::Stopping
        ) {
            untrack_actor(&self.inner, actor.get_id()).await;
        }
        Ok(TrackRef { slot })
    }

    /// Untracks one track. Untracking twice is fine.
    ///
    /// # Errors
    /// [`PresenceError::NotOwned`] for another node's track; [`PresenceError::Replica`].
    pub async fn untrack(&self, track: &TrackRef) -> Result<(), PresenceError> {
        let slot = self.owned(track)?;
        self.inner.replica.delete(&slot).await?;
        for slots in lock(&self.inner.by_actor).values_mut() {
            slots.retain(|s| *s != slot);
        }
        Ok(())
    }

    /// Replaces a track's meta: subscribers see a leave of the old meta and a join of the new.
    ///
    /// # Errors
    /// [`PresenceError::NotOwned`] for another node's track; [`PresenceError::Replica`].
    pub async fn update(&self, track: &TrackRef, meta: M) -> Result<(), PresenceError> {
        let slot = self.owned(track)?;
        if self.inner.replica.get(&slot).is_none() {
            return Ok(()); // untracked meanwhile: nothing to update
        }
        self.inner.replica.put(slot, Record::Meta(meta)).await?;
        Ok(())
    }

    /// Each key of `topic` that shows on this node, with every place it is tracked from.
    pub fn list(&self, topic: &str) -> BTreeMap<String, Vec<Placement<M>>> {
        let view = lock(&self.inner.view);
        let mut out: BTreeMap<String, Vec<Placement<M>>> = BTreeMap::new();
        for (slot, meta) in &view.visible {
            if let Slot::Entry {
                topic: t,
                key,
                node,
                ..
            } = slot
                && t == topic
            {
                out.entry(key.to_string()).or_default().push(Placement {
                    node: node.to_string(),
                    meta: meta.clone(),
                    track: TrackRef { slot: slot.clone() },
                });
            }
        }
        for places in out.values_mut() {
            places.sort_by(|a, b| a.track.slot.cmp(&b.track.slot));
        }
        out
    }

    /// Entries of `topic` that show on this node (places, not distinct keys).
    pub fn count(&self, topic: &str) -> usize {
        lock(&self.inner.view)
            .per_topic
            .get(topic)
            .copied()
            .unwrap_or(0)
    }

    /// Entries that show on this node, in all topics.
    pub fn len(&self) -> usize {
        lock(&self.inner.view).visible.len()
    }

    /// True when nothing shows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Joins and leaves of `topic` (of every topic with `None`), from now on.
    pub fn subscribe(&self, topic: Option<&str>) -> mpsc::UnboundedReceiver<PresenceDiff<M>> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.inner.view).subscribers.push(Subscriber {
            topic: topic.map(str::to_owned),
            tx,
        });
        rx
    }

    /// The replica under the presence (stats, neighbours).
    pub fn replica(&self) -> &PresenceReplica<M> {
        &self.inner.replica
    }

    /// Stops the presence: its watcher and its replica. Peers see its entries leave when
    /// they see this node leave.
    ///
    /// # Errors
    /// The replica's stop errors.
    pub async fn stop(self) -> Result<(), PresenceError> {
        self._task.0.abort();
        self.inner.monitor.stop(None);
        self.inner.replica.clone().stop().await?;
        Ok(())
    }

    fn owned(&self, track: &TrackRef) -> Result<Slot, PresenceError> {
        let (node, incarnation) = track.owner();
        if node != self.inner.node
            || incarnation != self.inner.incarnation
            || !matches!(track.slot, Slot::Entry { .. })
        {
            return Err(PresenceError::NotOwned(track.clone()));
        }
        Ok(track.slot.clone())
    }
}

/// The presence's replica: in memory (tracks describe live actors, which die with the
/// process), and a deep subscription queue, since the view must see every change to keep its
/// diffs exact and a lag costs a pass over every entry.
fn in_memory(mut options: ReplicaOptions) -> ReplicaOptions {
    options.storage = None;
    options.subscription_capacity = options.subscription_capacity.max(SUBSCRIPTION_BATCHES);
    options
}

/// Queue depth of the view's subscription to its replica, in change batches.
const SUBSCRIPTION_BATCHES: usize = 1 << 16;

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The background task: replica diffs, actor deaths and member-list changes update the view.
async fn run<M: Meta>(
    inner: Arc<Inner<M>>,
    mut diffs: Subscription<AwLwwMap<Slot, Record<M>>>,
    mut died: mpsc::UnboundedReceiver<ActorId>,
) {
    // Woken by each change of the replica's neighbours (it used to poll them every 10 ms:
    // 100 wake-ups a second per view on an idle node).
    let mut members = inner.replica.watch_neighbours();
    on_members(&inner).await;
    loop {
        tokio::select! {
            update = diffs.recv() => match update {
                None => return,
                Some(Update::Diffs(batch)) => on_diffs(&inner, batch).await,
                // Fell behind: decide everything again from the state it hands over.
                Some(Update::Lagged(now)) => {
                    reread_incarnations(&inner);
                    rescan(&inner, now.into_iter().collect());
                }
            },
            Some(actor) = died.recv() => untrack_actor(&inner, actor).await,
            Ok(()) = members.changed() => on_members(&inner).await,
        }
    }
}

async fn on_diffs<M: Meta>(inner: &Inner<M>, batch: Vec<Diff<Slot, Record<M>>>) {
    let mut stale = Vec::new();
    let mut rescan = false;
    let mut reread = false;
    let mut asked = false;
    {
        let mut view = lock(&inner.view);
        let mut out = Vec::new();
        for diff in &batch {
            let (slot, record) = match diff {
                Diff::Added { key, value } | Diff::Updated { key, value } => (key, Some(value)),
                Diff::Removed { key } => (key, None),
            };
            match (slot, record) {
                (
                    Slot::Incarnation { node, incarnation },
                    Some(Record::Started { at_ms, ask, .. }),
                ) => {
                    if *node == inner.node {
                        // This node's current incarnation is this run, whatever the clocks
                        // say; a record of a previous run goes.
                        if *incarnation != inner.incarnation {
                            stale.push(slot.clone());
                        }
                        continue;
                    }
                    asked |= *ask;
                    let now = Current {
                        started_ms: *at_ms,
                        incarnation: *incarnation,
                    };
                    rescan |= view.record_incarnation(node, now);
                    // Written by the running incarnation since this node last saw it go:
                    // its entries may show again.
                    if view.current.get(node.as_str()).map(|c| c.incarnation) == Some(*incarnation)
                    {
                        rescan |= view.confirmed.insert(node.clone());
                    }
                }
                (Slot::Incarnation { node, .. }, None) if *node != inner.node => {
                    // A record went (its node removed it): decide its node's current again.
                    view.current.remove(node.as_str());
                    reread = true;
                }
                (
                    Slot::Entry {
                        node, incarnation, ..
                    },
                    _,
                ) => {
                    if *node == inner.node && *incarnation != inner.incarnation {
                        stale.push(slot.clone());
                    }
                    out.extend(view.settle(slot, view::meta(record)));
                }
                _ => {}
            }
        }
        view.publish(out);
    }
    if reread {
        reread_incarnations(inner);
    }
    if rescan || reread {
        rescan_all(inner);
    }
    if asked {
        let _ = announce(inner, false).await;
    }
    // Entries of an earlier run of this node: never shown, and removed for good.
    for slot in stale {
        let _ = inner.replica.delete(&slot).await;
    }
}

/// Writes this incarnation's record again, `seq` one higher (see [`Record::Started`]).
async fn announce<M: Meta>(inner: &Inner<M>, ask: bool) -> Result<(), ReplicaError> {
    let seq = inner.announced.fetch_add(1, Ordering::Relaxed);
    inner
        .replica
        .put(
            Slot::Incarnation {
                node: inner.node.clone(),
                incarnation: inner.incarnation,
            },
            Record::Started {
                at_ms: inner.started_ms,
                seq,
                ask,
            },
        )
        .await
}

async fn on_members<M: Meta>(inner: &Inner<M>) {
    let mut live: std::collections::BTreeSet<SmolStr> = inner
        .replica
        .neighbours()
        .into_iter()
        .map(SmolStr::from)
        .collect();
    live.insert(inner.node.clone());
    let joined = {
        let mut view = lock(&inner.view);
        if view.live == live {
            return;
        }
        // A node that leaves the view must confirm its incarnation again when it is back:
        // until then its entries stay hidden (it may have restarted meanwhile).
        let left: Vec<SmolStr> = view.live.difference(&live).cloned().collect();
        for node in &left {
            view.confirmed.remove(node);
        }
        let joined = live.difference(&view.live).next().is_some();
        view.live = live;
        joined
    };
    rescan_all(inner);
    if joined {
        // Tell the newcomers (and a node back from a partition) that this run is current,
        // and ask them to confirm theirs.
        let _ = announce(inner, true).await;
    }
}

/// Notes every incarnation record in the replica.
fn reread_incarnations<M: Meta>(inner: &Inner<M>) {
    let records: Vec<(SmolStr, Current)> = inner.replica.read(|map| {
        map.iter()
            .filter_map(|(slot, record)| match (slot, record) {
                (Slot::Incarnation { node, incarnation }, Record::Started { at_ms, .. }) => Some((
                    node.clone(),
                    Current {
                        started_ms: *at_ms,
                        incarnation: *incarnation,
                    },
                )),
                _ => None,
            })
            .collect()
    });
    let mut view = lock(&inner.view);
    for (node, current) in records {
        if node != inner.node {
            view.record_incarnation(&node, current);
            // After a lag the confirmations that came meanwhile are unknown: trust the
            // records (a restarted node's new record wins by its start time anyway).
            view.confirmed.insert(node);
        }
    }
}

/// Re-decides every entry (a node came or went, or a node's incarnation changed).
fn rescan_all<M: Meta>(inner: &Inner<M>) {
    let entries: Vec<(Slot, Record<M>)> = inner.replica.read(|map| {
        map.iter()
            .filter(|(slot, _)| matches!(slot, Slot::Entry { .. }))
            .map(|(slot, record)| (slot.clone(), record.clone()))
            .collect()
    });
    rescan(inner, entries);
}

/// Re-decides every entry from `entries`, the whole map.
fn rescan<M: Meta>(inner: &Inner<M>, entries: Vec<(Slot, Record<M>)>) {
    let entries: Vec<(Slot, Option<M>)> = entries
        .into_iter()
        .filter(|(slot, _)| matches!(slot, Slot::Entry { .. }))
        .map(|(slot, record)| match record {
            Record::Meta(m) => (slot, Some(m)),
            Record::Started { .. } => (slot, None),
        })
        .collect();
    let mut view = lock(&inner.view);
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::with_capacity(entries.len());
    for (slot, meta) in &entries {
        out.extend(view.settle(slot, meta.as_ref()));
        seen.insert(slot.clone());
    }
    let gone: Vec<Slot> = view
        .visible
        .keys()
        .filter(|s| !seen.contains(*s))
        .cloned()
        .collect();
    for slot in gone {
        out.extend(view.settle(&slot, None));
    }
    view.publish(out);
}

async fn untrack_actor<M: Meta>(inner: &Inner<M>, actor: ActorId) {
    let slots = lock(&inner.by_actor).remove(&actor).unwrap_or_default();
    for slot in slots {
        let _ = inner.replica.delete(&slot).await;
    }
}

/// Monitors tracked actors and reports their end.
struct Monitor;

#[derive(ractor_cluster::RactorMessage)]
enum MonitorMsg {
    Watch(ActorCell),
}

impl Actor for Monitor {
    type Msg = MonitorMsg;
    type State = mpsc::UnboundedSender<ActorId>;
    type Arguments = mpsc::UnboundedSender<ActorId>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        died: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(died)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        MonitorMsg::Watch(actor): Self::Msg,
        _died: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        myself.get_cell().monitor(actor);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        died: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, ..)
            | SupervisionEvent::ActorFailed(cell, _) => {
                let _ = died.send(cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}
