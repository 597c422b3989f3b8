//! Registry: cluster-unique names for actors (Horde.Registry in Rust, without its bugs).
//!
//! # The model
//! A node [`register`](Registry::register)s one of its own actors under a name; any node can
//! [`lookup`](Registry::lookup) the name and get a [`NamedActor`] to `cast`/`call` — the actor
//! itself on its own node; on the others, messages go through the registry's one endpoint
//! actor on the holding node (one per node, not one cluster-layer group per name: see
//! `endpoint.rs` for why). [`whereis`](Registry::whereis) says which node holds
//! a name, [`select`](Registry::select) lists names by prefix, [`count`](Registry::count)
//! counts them, and [`subscribe`](Registry::subscribe) streams registrations, removals and
//! conflicts.
//!
//! # Owned claims, a local view
//! Following `DESIGN.md` ("Owned entries"), as in [`presence`](crate::presence):
//! * **A claim on a name is written only by the registering node**, tagged with that node's
//!   name, its **incarnation** (a fresh id per start of the registry) and its registration
//!   time. No call touches another node's claim.
//! * **What shows is decided locally**: a claim shows while its node is live here (this node,
//!   or a member hosting this registry) and its incarnation is that node's latest, confirmed
//!   since this node last saw it go. Nothing is written when a node goes down: its names
//!   vanish at once on every survivor that sees it go, and come back, with no re-write, when
//!   it returns from a partition with the same incarnation and its actors alive (Horde #291).
//!   A restarted node is a new incarnation: the old one's claims never show again, and the
//!   new one removes them from the map.
//! * **Bound to the actor:** a registered actor is monitored (ractor monitors); when it stops
//!   or fails its claims are removed.
//!
//! # One rule for conflicts
//! Two nodes may claim one name concurrently, or on two sides of a partition. Claims are kept
//! side by side (one map key per claim), so no claim is lost in the store; **the holder of a
//! name is the visible claim with the smallest (registration time, node name, incarnation,
//! claim id)**: first registration wins, the node name breaks ties. Every node that sees the
//! same claims picks the same holder. The registration time is the registering node's wall
//! clock in milliseconds, made strictly increasing on that node (no hybrid-logical clock is
//! exposed by the replica; the node name makes the order total whatever the clocks say).
//!
//! Only the **loser's own node** acts: it sends [`RegistryEvent::Conflict`] to its
//! subscribers, removes its losing claim (an owner write) and, under the default
//! [`ConflictPolicy::StopLoser`], stops the losing actor; [`ConflictPolicy::Notify`] leaves the
//! actor running, unregistered. During a partition a name may have a holder on each side; the
//! guarantee is one holder after the heal, the same on every node.
//!
//! # Lookups while a node joins (Horde #247)
//! Each node's incarnation record carries the number of claims it holds and the nodes it saw
//! live when it wrote it; a node rewrites its record whenever a node joins its view.
//! [`Registry::start`] waits (up to [`RegistryOptions::ready_timeout`]) until the node has
//! reached a member (when it has seeds), and then until, for every member it knows (the list is
//! read again while it waits), this node holds that member's record written after the member
//! saw this node, and at least as many of that member's claims as the record counts. So a lookup on a node that just joined does not miss a name registered
//! before the join began, unless the wait timed out ([`Registry::ready`] says whether it did)
//! or the owner unregistered names while this node synced. Local lookups read your own
//! writes: the claim shows before [`register`](Registry::register) returns.
//!
//! # Not yet
//! Claims of a node that never comes back stay in the map, hidden. Liveness follows the
//! member list of this registry's replica (connection-based). A remote [`lookup`](Registry::lookup)
//! needs the holding node's endpoint, reachable once the two nodes are connected;
//! [`lookup_within`](Registry::lookup_within) waits for it.

mod endpoint;
mod view;

#[cfg(test)]
mod tests;

use crate::cluster::Node;
use crate::crdt::AwLwwMap;
use crate::replica::{Diff, Replica, ReplicaError, ReplicaOptions, Subscription, Update};
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::mpsc;
use view::{Current, View};

pub use endpoint::NamedActor;
use endpoint::{Endpoint, EndpointMsg, LocalClaims, endpoint_name};

/// Where a record lives in the replicated map.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Slot {
    /// A node's incarnation record, written by that incarnation.
    Incarnation {
        /// The node's name.
        node: SmolStr,
        /// The incarnation.
        incarnation: u64,
    },
    /// One claim on a name.
    Name {
        /// The name.
        name: SmolStr,
        /// The registering node.
        node: SmolStr,
        /// Its incarnation.
        incarnation: u64,
        /// Unique within the incarnation.
        id: u64,
    },
}

/// A record of the replicated map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Record {
    /// An incarnation started at `at_ms` (wall clock, ms since the Unix epoch). Its node
    /// writes it again, `seq` one higher, whenever a node joins its view (with `ask`) and
    /// whenever it sees another node's record written with `ask` (without).
    ///
    /// Why the answer: a node that saw a peer go hides the peer's claims until the peer
    /// writes its record again, and the peer may never have seen anything (both ends dialled
    /// at once and one of the two sessions was closed, a flap shorter than its own check).
    /// Asking makes the confirmation not depend on both ends seeing the same events.
    Started {
        /// When.
        at_ms: u64,
        /// How many times it was written before.
        seq: u64,
        /// How many claims the incarnation held when it wrote this.
        names: u64,
        /// The nodes it saw live when it wrote this.
        live: BTreeSet<SmolStr>,
        /// Whether the other nodes are asked to write their records again.
        ask: bool,
    },
    /// A claim, registered at `at_ms` (the registering node's wall clock in ms, strictly
    /// increasing on that node).
    Registered {
        /// When.
        at_ms: u64,
    },
}

/// The replica under a [`Registry`].
pub type RegistryReplica = Replica<AwLwwMap<Slot, Record>>;

/// Names one claim; returned by [`Registry::register`], needed to unregister it. Only the
/// node that registered can use it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistrationRef {
    slot: Slot,
}

impl RegistrationRef {
    /// The registered name.
    pub fn name(&self) -> &str {
        match &self.slot {
            Slot::Name { name, .. } => name,
            Slot::Incarnation { .. } => "",
        }
    }

    /// The registering node.
    pub fn node(&self) -> &str {
        match &self.slot {
            Slot::Name { node, .. } | Slot::Incarnation { node, .. } => node,
        }
    }
}

/// Who holds a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name.
    pub name: SmolStr,
    /// The node that registered it.
    pub node: SmolStr,
    /// That node's incarnation.
    pub incarnation: u64,
    /// When it was registered (the registering node's wall clock, ms since the Unix epoch).
    pub registered_ms: u64,
    slot: Slot,
}

impl Entry {
    /// The claim, as its node's [`RegistrationRef`].
    pub fn registration(&self) -> RegistrationRef {
        RegistrationRef {
            slot: self.slot.clone(),
        }
    }
}

/// A change of who holds a name, as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryEvent {
    /// `entry` now holds its name (a registration, a node back in view, or the winner of a
    /// conflict taking over from a claim that showed first).
    Registered(Entry),
    /// `entry` no longer holds its name (an unregister, its actor stopped, its node went out
    /// of view, or it lost a conflict).
    Unregistered(Entry),
    /// Sent only on the loser's node: this node's claim `loser` lost its name to `winner`; the
    /// claim is removed and, under [`ConflictPolicy::StopLoser`], its actor stopped.
    Conflict {
        /// The claim that holds the name.
        winner: Entry,
        /// This node's claim that lost.
        loser: Entry,
    },
}

/// What a node does with its own actor when its claim loses a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConflictPolicy {
    /// Stop the losing actor (the default, as Horde does).
    #[default]
    StopLoser,
    /// Leave the losing actor running, unregistered, and only tell subscribers.
    Notify,
}

/// Options of a registry.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// The replica's options; its name is the registry's name (`storage` is ignored: claims
    /// describe live actors).
    pub replica: ReplicaOptions,
    /// What to do with a losing actor.
    pub conflict: ConflictPolicy,
    /// How long [`Registry::start`] waits to hold the other members' claims (see the module
    /// docs). Default 5 s.
    pub ready_timeout: Duration,
}

impl RegistryOptions {
    /// Options for a registry named `name`, with the defaults.
    pub fn new(name: &str) -> Self {
        RegistryOptions {
            replica: ReplicaOptions::new(name),
            conflict: ConflictPolicy::default(),
            ready_timeout: Duration::from_secs(5),
        }
    }

    /// Sets the conflict policy.
    pub fn conflict(mut self, policy: ConflictPolicy) -> Self {
        self.conflict = policy;
        self
    }

    /// Sets the readiness wait.
    pub fn ready_timeout(mut self, wait: Duration) -> Self {
        self.ready_timeout = wait;
        self
    }

    /// Sets the replica's options (keep the name).
    pub fn replica(mut self, replica: ReplicaOptions) -> Self {
        self.replica = replica;
        self
    }
}

/// Why a registry call failed. Nothing was changed unless a variant says so.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The name is held, by `holder`.
    #[error("{} is already registered on node {}", holder.name, holder.node)]
    AlreadyRegistered {
        /// Who holds it.
        holder: Entry,
    },
    /// Only actors of this node can be registered here.
    #[error("actor for {name} is not local to this node")]
    NotLocal {
        /// The name.
        name: String,
    },
    /// The claim was made by another node or incarnation: only its owner may remove it.
    #[error("registration {0:?} is not owned by this node's registry")]
    NotOwned(RegistrationRef),
    /// The replica refused (storage, the actor, a stopped replica).
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// The registry's watcher actor could not start.
    #[error("starting the registry watcher: {0}")]
    Watcher(#[source] ractor::SpawnErr),
}

struct Inner {
    replica: RegistryReplica,
    cluster: Option<Node>,
    node: SmolStr,
    incarnation: u64,
    started_ms: u64,
    policy: ConflictPolicy,
    announced: AtomicU64,
    next_id: AtomicU64,
    last_ms: Mutex<u64>,
    ready: AtomicBool,
    view: Mutex<View>,
    /// This node's claims and their actors (shared with the endpoint).
    local: LocalClaims,
    by_actor: Mutex<HashMap<ActorId, Vec<Slot>>>,
    monitor: ActorRef<MonitorMsg>,
    /// Delivers other nodes' messages to this node's registered actors (with a cluster).
    endpoint: Option<ActorRef<EndpointMsg>>,
}

/// A cluster-wide registry of names over one replicated map. Cheap to clone; every clone is
/// the same registry.
///
/// # Examples
/// ```no_run
/// use herd::cluster::{Node, NodeConfig};
/// use herd::registry::{Registry, RegistryOptions};
///
/// # async fn run(actor: ractor::ActorRef<()>) -> Result<(), Box<dyn std::error::Error>> {
/// let node = Node::start(NodeConfig::new("a")).await?;
/// let registry = Registry::start(&node, RegistryOptions::new("names")).await?;
/// registry.register("worker-1", &actor).await?;
/// let found: Option<herd::registry::NamedActor<()>> = registry.lookup("worker-1");
/// println!("{:?}", registry.whereis("worker-1").map(|e| e.node)); // Some("a")
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
    _task: Arc<TaskGuard>,
}

struct TaskGuard(tokio::task::JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Registry {
    /// Starts a registry on `node`: its replica (in memory), its incarnation record and its
    /// watcher; then waits, up to `options.ready_timeout`, until it holds the claims of the
    /// cluster's other members (see the module docs; [`ready`](Self::ready) says whether it
    /// did).
    ///
    /// # Errors
    /// The replica's start errors; [`RegistryError::Watcher`].
    pub async fn start(node: &Node, options: RegistryOptions) -> Result<Self, RegistryError> {
        let replica = RegistryReplica::start(node, in_memory(options.replica.clone())).await?;
        let registry = Self::over(
            replica,
            node.name().to_owned(),
            Some(node.clone()),
            &options,
        )
        .await?;
        registry
            .until_members_synced(node, options.ready_timeout)
            .await;
        Ok(registry)
    }

    /// Like [`start`](Self::start) without a cluster: `node_name` names this node, the
    /// replica's neighbours are set by hand, and lookups find only this node's actors.
    /// Ready at once.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn start_local(
        node_name: &str,
        options: RegistryOptions,
    ) -> Result<Self, RegistryError> {
        let replica = RegistryReplica::start_local(in_memory(options.replica.clone())).await?;
        let registry = Self::over(replica, node_name.to_owned(), None, &options).await?;
        registry.inner.ready.store(true, Ordering::Release);
        Ok(registry)
    }

    async fn over(
        replica: RegistryReplica,
        node: String,
        cluster: Option<Node>,
        options: &RegistryOptions,
    ) -> Result<Self, RegistryError> {
        let incarnation = replica.id().as_u64();
        let (died_tx, died_rx) = mpsc::unbounded_channel();
        let (monitor, _) = Actor::spawn(None, Monitor, died_tx)
            .await
            .map_err(RegistryError::Watcher)?;
        let started_ms = wall_ms();
        let mut view = View::new(&node);
        view.record_incarnation(
            &node,
            Current {
                started_ms,
                incarnation,
            },
        );
        let diffs = replica.subscribe_deep(crate::replica::PRODUCT_DIFF_QUEUE);
        let local: LocalClaims = Arc::default();
        let endpoint = match &cluster {
            Some(node) => {
                let (endpoint, _) = Actor::spawn(None, Endpoint, Arc::clone(&local))
                    .await
                    .map_err(RegistryError::Watcher)?;
                node.publish(&endpoint_name(replica.name()), &endpoint)
                    .map_err(|_| RegistryError::NotLocal {
                        name: endpoint_name(replica.name()),
                    })?;
                Some(endpoint)
            }
            None => None,
        };
        let inner = Arc::new(Inner {
            replica,
            cluster,
            node: node.into(),
            incarnation,
            started_ms,
            policy: options.conflict,
            announced: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            last_ms: Mutex::new(0),
            ready: AtomicBool::new(false),
            view: Mutex::new(view),
            local,
            by_actor: Mutex::new(HashMap::new()),
            monitor,
            endpoint,
        });
        announce(&inner, true).await?;
        let task = tokio::spawn(run(inner.clone(), diffs, died_rx));
        Ok(Registry {
            inner,
            _task: Arc::new(TaskGuard(task)),
        })
    }

    /// Registers `actor` (one of this node's) under `name`, until it is unregistered, the
    /// actor stops, or the claim loses a conflict. The name shows here before this returns.
    ///
    /// # Errors
    /// [`RegistryError::AlreadyRegistered`] if the name shows as held on this node;
    /// [`RegistryError::NotLocal`]; [`RegistryError::Replica`]. Nothing registered then.
    pub async fn register<M: ractor::Message>(
        &self,
        name: impl Into<SmolStr>,
        actor: &ActorRef<M>,
    ) -> Result<RegistrationRef, RegistryError> {
        let name = name.into();
        if !actor.get_id().is_local() {
            return Err(RegistryError::NotLocal {
                name: name.to_string(),
            });
        }
        if let Some(holder) = self.whereis(&name) {
            return Err(RegistryError::AlreadyRegistered { holder });
        }
        let inner = &self.inner;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Slot::Name {
            name: name.clone(),
            node: inner.node.clone(),
            incarnation: inner.incarnation,
            id,
        };
        let at_ms = {
            let mut last = lock(&inner.last_ms);
            *last = wall_ms().max(*last + 1);
            *last
        };
        let cell = actor.get_cell();
        lock(&inner.local).insert(slot.clone(), cell.clone());
        lock(&inner.by_actor)
            .entry(cell.get_id())
            // Capacity 1: one actor per name is the common case, and a vector's first
            // growth makes room for four slots.
            .or_insert_with(|| Vec::with_capacity(1))
            .push(slot.clone());
        if let Err(e) = inner
            .replica
            .put(slot.clone(), Record::Registered { at_ms })
            .await
        {
            forget_local(inner, &slot);
            return Err(e.into());
        }
        // Read your writes: show the claim now rather than when the diff comes back.
        settle(inner, vec![(slot.clone(), Some(at_ms))], false).await;
        let _ = inner.monitor.cast(MonitorMsg::Watch(cell.clone()));
        if matches!(
            cell.get_status(),
            ractor::ActorStatus::Stopped | ractor::ActorStatus::Stopping
        ) {
            remove_actor(inner, cell.get_id()).await;
        }
        Ok(RegistrationRef { slot })
    }

    /// Removes one of this node's claims. Unregistering twice is fine.
    ///
    /// # Errors
    /// [`RegistryError::NotOwned`] for another node's claim; [`RegistryError::Replica`].
    pub async fn unregister(&self, registration: &RegistrationRef) -> Result<(), RegistryError> {
        match &registration.slot {
            Slot::Name {
                node, incarnation, ..
            } if *node == self.inner.node && *incarnation == self.inner.incarnation => {}
            _ => return Err(RegistryError::NotOwned(registration.clone())),
        }
        remove_claim(&self.inner, &registration.slot).await?;
        Ok(())
    }

    /// Who holds `name`, as this node sees it.
    pub fn whereis(&self, name: &str) -> Option<Entry> {
        lock(&self.inner.view).winner(name).cloned()
    }

    /// The actor holding `name`, to `cast`/`call`: the actor itself if it is this node's,
    /// sent to through its node's registry endpoint otherwise (`None` while the name does
    /// not show, while the endpoint of its node is not reachable from here yet, or for
    /// another node's actor in a registry started with [`start_local`](Self::start_local)).
    ///
    /// `M` must be the message type the actor was registered with; ractor cannot check it
    /// for a remote actor.
    pub fn lookup<M: ractor::Message>(&self, name: &str) -> Option<NamedActor<M>> {
        let entry = self.whereis(name)?;
        if entry.node == self.inner.node {
            return lock(&self.inner.local).get(&entry.slot).map(|cell| {
                NamedActor::local(entry.node.to_string(), ActorRef::from(cell.clone()))
            });
        }
        let node = self.inner.cluster.as_ref()?;
        let endpoint = node
            .resolve::<EndpointMsg>(&endpoint_name(self.inner.replica.name()))
            .into_iter()
            .find(|l| l.node == entry.node)?
            .actor;
        Some(NamedActor::remote(
            entry.node.to_string(),
            entry.slot,
            endpoint,
        ))
    }

    /// [`lookup`](Self::lookup), waiting up to `wait` for the name to show and its node's
    /// endpoint to be reachable from this node.
    pub async fn lookup_within<M: ractor::Message>(
        &self,
        name: &str,
        wait: Duration,
    ) -> Option<NamedActor<M>> {
        let end = tokio::time::Instant::now() + wait;
        loop {
            if let Some(found) = self.lookup(name) {
                return Some(found);
            }
            if tokio::time::Instant::now() >= end {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The names that start with `prefix` (every name with `""`) and their holders, sorted
    /// by name.
    pub fn select(&self, prefix: &str) -> Vec<Entry> {
        let view = lock(&self.inner.view);
        view.names
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(name, _)| name.starts_with(prefix))
            .filter_map(|(_, claims)| claims.first().cloned())
            .collect()
    }

    /// How many names starting with `prefix` are held, as this node sees it (without
    /// copying them, unlike [`select`](Self::select)).
    pub fn count_prefix(&self, prefix: &str) -> usize {
        let view = lock(&self.inner.view);
        view.names
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(name, _)| name.starts_with(prefix))
            .count()
    }

    /// How many names are held, as this node sees it.
    pub fn count(&self) -> usize {
        lock(&self.inner.view).names.len()
    }

    /// Registrations, removals and this node's conflicts, from now on.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<RegistryEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.inner.view).subscribers.push(tx);
        rx
    }

    /// Whether the start-up wait for the other members' claims succeeded (always true for a
    /// [`start_local`](Self::start_local) registry).
    pub fn ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// Waits, up to `wait`, until this node holds, for each of `nodes`, a record that node
    /// wrote after it saw this node, and at least as many of its claims as the record counts.
    /// Returns whether it did (and then marks the registry [`ready`](Self::ready)).
    pub async fn until_synced(&self, nodes: &[String], wait: Duration) -> bool {
        let end = tokio::time::Instant::now() + wait;
        loop {
            if nodes.iter().all(|n| synced_with(&self.inner, n)) {
                self.inner.ready.store(true, Ordering::Release);
                return true;
            }
            if tokio::time::Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits, up to `wait`, until this node has a member (when it has seeds to reach) and is
    /// synced with every member it knows that hosts this registry (the member list is read
    /// again as it grows). A member that is still not a neighbour of the registry's replica
    /// [`NOT_HOSTING_AFTER`] after this node first saw it runs no registry of this name (its
    /// replica groups arrive with its session): it holds no claim to wait for.
    async fn until_members_synced(&self, node: &Node, wait: Duration) {
        let end = tokio::time::Instant::now() + wait;
        let mut first_seen: HashMap<String, tokio::time::Instant> = HashMap::new();
        loop {
            let now = tokio::time::Instant::now();
            // Crate-internal: whether seeds may still answer (no public accessor yet).
            let members = node.members();
            let neighbours = self.inner.replica.neighbours();
            let mut synced = !members.is_empty() || !node.handover_probe().has_seeds();
            for member in &members {
                let seen = *first_seen.entry(member.clone()).or_insert(now);
                let hosts = neighbours.contains(member) || now - seen < NOT_HOSTING_AFTER;
                synced &= !hosts || synced_with(&self.inner, member);
            }
            if synced {
                self.inner.ready.store(true, Ordering::Release);
                return;
            }
            if now >= end {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// The replica under the registry (stats, neighbours).
    pub fn replica(&self) -> &RegistryReplica {
        &self.inner.replica
    }

    /// Stops the registry: its watcher and its replica. Peers see its names go when they see
    /// this node leave. The registered actors keep running.
    ///
    /// # Errors
    /// The replica's stop errors.
    pub async fn stop(self) -> Result<(), RegistryError> {
        self._task.0.abort();
        self.inner.monitor.stop(None);
        if let Some(endpoint) = &self.inner.endpoint {
            endpoint.stop(None);
        }
        self.inner.replica.clone().stop().await?;
        Ok(())
    }
}

/// How long after a member first shows, with no replica of this registry's name among its
/// groups, it counts as running none (see `until_members_synced`): ractor sends a node's
/// groups as its session opens, so they arrive well within this.
const NOT_HOSTING_AFTER: Duration = Duration::from_secs(1);

fn in_memory(mut options: ReplicaOptions) -> ReplicaOptions {
    options.storage = None;
    options
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes this incarnation's record again, `seq` one higher. With `ask`, the other nodes
/// answer with a record of their own (see [`Record::Started`]).
async fn announce(inner: &Inner, ask: bool) -> Result<(), ReplicaError> {
    let seq = inner.announced.fetch_add(1, Ordering::Relaxed);
    let names = lock(&inner.local).len() as u64;
    let live = lock(&inner.view).live.clone();
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
                names,
                live,
                ask,
            },
        )
        .await
}

/// Whether this node holds `node`'s claims (see [`Registry::until_synced`]).
fn synced_with(inner: &Inner, node: &str) -> bool {
    inner.replica.read(|map| {
        let record = map
            .iter()
            .filter_map(|(slot, record)| match (slot, record) {
                (
                    Slot::Incarnation {
                        node: n,
                        incarnation,
                    },
                    Record::Started {
                        at_ms, names, live, ..
                    },
                ) if n == node => Some(((*at_ms, *incarnation), *names, live)),
                _ => None,
            })
            .max_by_key(|(rank, ..)| *rank);
        let Some(((_, incarnation), names, live)) = record else {
            return false;
        };
        if !live.contains(&inner.node) {
            return false;
        }
        // Counted in the view, not the map: what lookups answer from.
        let held = lock(&inner.view)
            .visible()
            .filter(|slot| {
                matches!(slot, Slot::Name { node: n, incarnation: i, .. }
                    if n == node && *i == incarnation)
            })
            .count() as u64;
        held >= names
    })
}

fn forget_local(inner: &Inner, slot: &Slot) {
    let removed = lock(&inner.local).remove(slot);
    if let Some(cell) = removed
        && let Some(slots) = lock(&inner.by_actor).get_mut(&cell.get_id())
    {
        slots.retain(|s| s != slot);
    }
}

/// Removes one of this node's claims: from the map, the local index and the view.
async fn remove_claim(inner: &Inner, slot: &Slot) -> Result<(), ReplicaError> {
    forget_local(inner, slot);
    inner.replica.delete(slot).await?;
    settle(inner, vec![(slot.clone(), None)], false).await;
    Ok(())
}

/// Settles claims in the view, publishes the changes of holders and handles this node's
/// lost conflicts. With `all`, claims that show but are not in `claims` are dropped.
async fn settle(inner: &Inner, claims: Vec<(Slot, Option<u64>)>, all: bool) {
    let mut losers = Vec::new();
    {
        let mut view = lock(&inner.view);
        let mut claims = claims;
        if all {
            let seen: std::collections::HashSet<&Slot> = claims.iter().map(|(s, _)| s).collect();
            let gone: Vec<Slot> = view
                .visible()
                .filter(|s| !seen.contains(s))
                .cloned()
                .collect();
            claims.extend(gone.into_iter().map(|s| (s, None)));
        }
        // Holders before, only of names whose claims change.
        let mut before: BTreeMap<SmolStr, Option<Entry>> = BTreeMap::new();
        let mut changed = BTreeSet::new();
        for (slot, at) in &claims {
            if !view.would_change(slot, *at) {
                continue;
            }
            if let Slot::Name { name, .. } = slot
                && !before.contains_key(name)
            {
                before.insert(name.clone(), view.winner(name).cloned());
            }
            if let Some(name) = view.settle(slot, *at) {
                changed.insert(name);
            }
        }
        let mut events = Vec::new();
        for name in changed {
            let old = before.get(&name).cloned().flatten();
            let new = view.winner(&name).cloned();
            if old != new {
                events.extend(old.map(RegistryEvent::Unregistered));
                events.extend(new.clone().map(RegistryEvent::Registered));
            }
            if let Some(winner) = new {
                for loser in view.names.get(&name).into_iter().flatten() {
                    if loser.slot != winner.slot
                        && loser.node == inner.node
                        && loser.incarnation == inner.incarnation
                    {
                        losers.push((winner.clone(), loser.clone()));
                    }
                }
            }
        }
        view.publish(events);
    }
    for (winner, loser) in losers {
        let cell = lock(&inner.local).get(&loser.slot).cloned();
        tracing::info!(name = %loser.name, winner = %winner.node, "registry: this node's claim lost");
        lock(&inner.view).publish(vec![RegistryEvent::Conflict {
            winner,
            loser: loser.clone(),
        }]);
        let _ = Box::pin(remove_claim(inner, &loser.slot)).await;
        if let (Some(cell), ConflictPolicy::StopLoser) = (cell, inner.policy) {
            cell.stop(Some("herd registry: name conflict lost".to_owned()));
        }
    }
}

/// The background task: replica diffs, actor deaths and member-list changes update the view.
async fn run(
    inner: Arc<Inner>,
    mut diffs: Subscription<AwLwwMap<Slot, Record>>,
    mut died: mpsc::UnboundedReceiver<ActorId>,
) {
    // Woken by each change of the replica's neighbours (it used to poll them every 10 ms:
    // 100 wake-ups a second per view on an idle node).
    let mut members = inner.replica.watch_neighbours();
    on_members(&inner).await;
    loop {
        let started = std::time::Instant::now();
        let step = tokio::select! {
            update = diffs.recv() => match update {
                None => return,
                Some(Update::Diffs(batch)) => {
                    on_diffs(&inner, batch).await;
                    "diffs"
                }
                // Fell behind: decide everything again from the fresh copy it hands over.
                Some(Update::Lagged(now)) => {
                    reread_incarnations(&inner);
                    let claims = now
                        .into_iter()
                        .filter_map(|(slot, record)| match (&slot, record) {
                            (Slot::Name { .. }, Record::Registered { at_ms }) => {
                                Some((slot, Some(at_ms)))
                            }
                            _ => None,
                        })
                        .collect();
                    settle(&inner, claims, true).await;
                    "lagged"
                }
            },
            Some(actor) = died.recv() => {
                remove_actor(&inner, actor).await;
                "actor stopped"
            }
            Ok(()) = members.changed() => {
                on_members(&inner).await;
                "members"
            }
        };
        let took = started.elapsed();
        if took > SLOW_STEP {
            tracing::warn!(
                step,
                took_ms = took.as_millis() as u64,
                "registry: a view update took long"
            );
        }
    }
}

/// A view update taking longer than this is logged: lookups and registrations wait on it.
const SLOW_STEP: Duration = Duration::from_millis(100);

async fn on_diffs(inner: &Inner, batch: Vec<Diff<Slot, Record>>) {
    let mut stale = Vec::new();
    let mut rescan = false;
    let mut reread = false;
    let mut asked = false;
    let mut claims = Vec::new();
    {
        let mut view = lock(&inner.view);
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
                    if view.current.get(node).map(|c| c.incarnation) == Some(*incarnation) {
                        rescan |= view.confirmed.insert(node.clone());
                    }
                }
                (Slot::Incarnation { node, .. }, None) if *node != inner.node => {
                    view.current.remove(node);
                    reread = true;
                }
                (
                    Slot::Name {
                        node, incarnation, ..
                    },
                    _,
                ) => {
                    if *node == inner.node && *incarnation != inner.incarnation {
                        stale.push(slot.clone());
                    }
                    let at = match record {
                        Some(Record::Registered { at_ms }) => Some(*at_ms),
                        _ => None,
                    };
                    claims.push((slot.clone(), at));
                }
                _ => {}
            }
        }
    }
    settle(inner, claims, false).await;
    if reread {
        reread_incarnations(inner);
    }
    if rescan || reread {
        rescan_all(inner).await;
    }
    if asked {
        let _ = announce(inner, false).await;
    }
    // Claims of an earlier run of this node: never shown, and removed for good.
    for slot in stale {
        let _ = inner.replica.delete(&slot).await;
    }
}

async fn on_members(inner: &Inner) {
    let mut live: BTreeSet<SmolStr> = inner
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
        let left: Vec<SmolStr> = view.live.difference(&live).cloned().collect();
        for node in &left {
            view.confirmed.remove(node);
        }
        let joined = live.difference(&view.live).next().is_some();
        view.live = live;
        joined
    };
    rescan_all(inner).await;
    if joined {
        // Tell the newcomers (and a node back from a partition) that this run is current,
        // and how many claims it holds; ask them to confirm theirs, since they may not have
        // seen this node go.
        let _ = announce(inner, true).await;
    }
}

/// Notes every incarnation record in the replica.
fn reread_incarnations(inner: &Inner) {
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
            view.confirmed.insert(node);
        }
    }
}

/// Re-decides every claim (a node came or went, or a node's incarnation changed).
async fn rescan_all(inner: &Inner) {
    let claims: Vec<(Slot, Option<u64>)> = inner.replica.read(|map| {
        map.iter()
            .filter_map(|(slot, record)| match (slot, record) {
                (Slot::Name { .. }, Record::Registered { at_ms }) => {
                    Some((slot.clone(), Some(*at_ms)))
                }
                _ => None,
            })
            .collect()
    });
    settle(inner, claims, true).await;
}

async fn remove_actor(inner: &Inner, actor: ActorId) {
    let slots = lock(&inner.by_actor).remove(&actor).unwrap_or_default();
    for slot in slots {
        let _ = remove_claim(inner, &slot).await;
    }
}

/// Monitors registered actors and reports their end.
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
