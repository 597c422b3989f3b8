//! A distributed DynamicSupervisor: children described once, run exactly once somewhere in
//! the cluster, moved when nodes come and go (Horde.DynamicSupervisor in Rust, without its
//! duplicated children).
//!
//! # The model
//! * **Child kinds** are registered on every node as factories: a kind name and how to start
//!   a child of that kind from serialized arguments ([`ChildFactory`],
//!   [`SupervisorOptions::kind`]).
//! * **A child spec** is a stable, user-given [`ChildId`], a kind, the arguments and a
//!   [`Restart`] policy. [`start_child`](Supervisor::start_child) writes it into a
//!   replicated desired-state map (durable if its replica options give storage); it never
//!   proxies to another node. An id that already has a spec is refused with
//!   [`SupervisorError::AlreadyPresent`] **without writing** (Horde #200: every attempt
//!   there added state).
//! * **Placement is computed, not stored**: the owner of a child is a pure function of its
//!   id and the eligible members ([`DistributionStrategy`], by default [`Rendezvous`]
//!   hashing), so every node with the same member list names the same owner.
//! * **A running child is registered** in a [`Registry`] owned by the supervisor, under its
//!   id. The Registry's owned claims give the rest: a crashed node's children vanish from
//!   every survivor's view when the failure detector fires, a restarted node's old claims
//!   never show again (Horde #224), two copies after a partition heals meet the registry's
//!   one conflict rule and the loser is stopped, and [`lookup`](Supervisor::lookup) finds a
//!   child wherever it runs.
//!
//! # Reconciliation
//! Every node runs the same level-triggered loop, on every change of the specs, of the
//! registrations and of the members, and on a periodic tick (so a lost event cannot leave a
//! child stuck, Horde #191):
//! * a child whose owner is this node, that does not run here, and whose registration shows
//!   nowhere else, is started here;
//! * a child running here whose spec is gone (terminated) is stopped;
//! * a child running here whose owner is now another node (a node joined) is handed over —
//!   stopped and unregistered, so the new owner starts it (stop, then start: never two
//!   copies because of a handover) — under [`Redistribution::Active`];
//!   [`Redistribution::Passive`] leaves running children where they are.
//!
//! A node that leaves gracefully ([`Supervisor::shutdown`]) first writes a drain mark, so
//! no node places children on it any more, stops its children, and waits (up to
//! [`SupervisorOptions::handover_timeout`]) until each runs elsewhere. A node that crashes
//! is seen Down by the failure detector; its registrations vanish and each survivor that
//! now owns one of its children starts it.
//!
//! # Restarts
//! The node running a child watches it (a ractor monitor). A child that exits is restarted
//! there according to its [`Restart`] policy; more than
//! [`max_restarts`](SupervisorOptions::max_restarts) restarts (or failed starts) within
//! [`max_seconds`](SupervisorOptions::max_seconds) mark it [`ChildStatus::Failed`] in the
//! replicated map: it is then not restarted anywhere (a crash loop does not travel from node
//! to node) until it is terminated.
//!
//! # Quorum
//! With [`Quorum`] placement, children run only on a side of the cluster that sees a strict
//! majority of a **static** number or list of expected members (never of the live list:
//! Horde #45). A minority side stops its children and refuses `start_child` with
//! [`SupervisorError::NoQuorum`].
//!
//! # Example
//! ```no_run
//! use herd::cluster::{Node, NodeConfig};
//! use herd::supervisor::{ChildContext, ChildSpec, Supervisor, SupervisorOptions};
//! use ractor::{Actor, ActorProcessingErr, ActorRef};
//!
//! struct Worker;
//! impl Actor for Worker {
//!     type Msg = ();
//!     type State = ();
//!     type Arguments = ();
//!     async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
//!         Ok(())
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::start(NodeConfig::new("a").seed("127.0.0.1:4101")).await?;
//! let options = SupervisorOptions::new("jobs").kind("worker", |_ctx: ChildContext| async {
//!     let (worker, _) = Actor::spawn(None, Worker, ()).await?;
//!     Ok(worker.get_cell())
//! });
//! let sup = Supervisor::start(&node, options).await?;
//! sup.start_child(ChildSpec::new("job-1", "worker", Vec::new())).await?;
//! for child in sup.which_children() {
//!     println!("{} {:?}", child.id, child.status); // job-1 Running { node: ... }
//! }
//! sup.shutdown().await?; // hands this node's children over
//! node.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Membership changes settle first
//! Placement acts on a member list only once it has held for
//! [`stable_after`](SupervisorOptions::stable_after) (500 ms): a node declared down and back
//! within it (a starved heartbeat) moves nothing. A minority side of a [`Quorum`] supervisor
//! stops its children at once, while the majority waits `stable_after` before starting them,
//! so "at most one copy" holds when the two sides' failure detectors fire within
//! `stable_after` of each other.
//!
//! # Not yet
//! * No lease: a frozen (SIGSTOPped) minority node that wakes up can run its copies until its
//!   own detector fires.
//! * No limit on handovers in flight, and no event stream of starts and moves.
//! * Children's own state is not handed over: a moved child starts afresh from its spec.

mod factory;
mod intensity;
mod placement;
mod reconcile;
mod spec;

#[cfg(test)]
mod tests;

pub use factory::{ChildContext, ChildFactory, StartFuture};
pub use placement::{DistributionStrategy, Quorum, Rendezvous};
pub use spec::{ChildCounts, ChildId, ChildInfo, ChildSpec, ChildStatus, Key, Restart, Value};

use crate::cluster::Node;
use crate::crdt::AwLwwMap;
use crate::registry::{Registry, RegistryError, RegistryOptions};
use crate::replica::{Replica, ReplicaError, ReplicaOptions};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

/// The desired-state replica under a [`Supervisor`].
pub type SpecReplica = Replica<AwLwwMap<Key, Value>>;

/// What a node does with running children whose owner changed because a node joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Redistribution {
    /// Hand them over to their new owner (stop here, then the owner starts them). The
    /// default: placement stays a pure function of the members.
    #[default]
    Active,
    /// Leave them where they run; only children that run nowhere are placed.
    Passive,
}

/// Why a supervisor call failed. Nothing was changed unless a variant says so.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SupervisorError {
    /// A child with this id is already wanted (its spec exists); nothing was written.
    /// `node` is where it runs, if it runs.
    #[error("child {id} already exists{}", node.as_ref().map(|n| format!(" (running on {n})")).unwrap_or_default())]
    AlreadyPresent {
        /// The id.
        id: ChildId,
        /// Where it runs, as this node sees it.
        node: Option<String>,
    },
    /// This node's side of the cluster has no quorum ([`Quorum`] placement).
    #[error("no quorum: this node does not see a majority of the expected members")]
    NoQuorum,
    /// No factory for this kind on this node.
    #[error("unknown child kind {0}")]
    UnknownKind(String),
    /// No child with this id.
    #[error("no child {0}")]
    NotFound(ChildId),
    /// The supervisor is shutting down or stopped.
    #[error("the supervisor is shut down")]
    ShutDown,
    /// The desired-state replica refused.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// The registry of running children refused.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The supervisor's watcher actor could not start.
    #[error("starting the supervisor's watcher: {0}")]
    Watcher(#[source] ractor::SpawnErr),
}

/// Options of a supervisor. Every node must give the same name, kinds and strategy.
#[derive(Clone)]
pub struct SupervisorOptions {
    /// The supervisor's name; its replicas are `sup.<name>.specs` and `sup.<name>.running`.
    pub name: String,
    /// The desired-state replica's options (give it storage to keep specs across restarts
    /// of the whole cluster). Its name is set from `name`.
    pub specs: ReplicaOptions,
    /// The running children's registry's options. Its name is set from `name`; its conflict
    /// policy must stay [`StopLoser`](crate::registry::ConflictPolicy::StopLoser), which is
    /// what stops a duplicate after a partition heals.
    pub registry: RegistryOptions,
    /// Placement; default [`Rendezvous`].
    pub strategy: Arc<dyn DistributionStrategy>,
    /// What happens to running children when a node joins; default [`Redistribution::Active`].
    pub redistribution: Redistribution,
    /// More restarts than this within [`max_seconds`](Self::max_seconds) mark a child
    /// failed. Default 3 (OTP's default).
    pub max_restarts: u32,
    /// The restart-intensity window. Default 5 s (OTP's default).
    pub max_seconds: Duration,
    /// How long a stopping child may take before it is killed. Default 5 s.
    pub stop_timeout: Duration,
    /// How long [`Supervisor::shutdown`] waits for its children to run elsewhere. Default 10 s.
    pub handover_timeout: Duration,
    /// How often the loop re-derives everything even without an event. Default 500 ms.
    pub reconcile_interval: Duration,
    /// How long the member list must hold before placement acts on it (starts children a
    /// node owns, hands children over). Default 500 ms. Like Akka's `stable-after`, shorter
    /// than the failure detector's timeout: a node declared down and back within it moves
    /// nothing. Failover takes the detector's time plus this.
    pub stable_after: Duration,
    kinds: HashMap<String, Arc<dyn ChildFactory>>,
}

impl SupervisorOptions {
    /// Options for a supervisor named `name`, with the defaults and no kinds.
    pub fn new(name: &str) -> Self {
        SupervisorOptions {
            name: name.to_owned(),
            specs: ReplicaOptions::new(specs_name(name)),
            registry: RegistryOptions::new(&running_name(name)),
            strategy: Arc::new(Rendezvous),
            redistribution: Redistribution::default(),
            max_restarts: 3,
            max_seconds: Duration::from_secs(5),
            stop_timeout: Duration::from_secs(5),
            handover_timeout: Duration::from_secs(10),
            reconcile_interval: Duration::from_millis(500),
            stable_after: Duration::from_millis(500),
            kinds: HashMap::new(),
        }
    }

    /// Registers child kind `kind` (the same name and factory on every node).
    #[must_use]
    pub fn kind(mut self, kind: &str, factory: impl ChildFactory) -> Self {
        self.kinds.insert(kind.to_owned(), Arc::new(factory));
        self
    }

    /// Sets the placement strategy.
    #[must_use]
    pub fn strategy(mut self, strategy: impl DistributionStrategy) -> Self {
        self.strategy = Arc::new(strategy);
        self
    }

    /// Sets the redistribution mode.
    #[must_use]
    pub fn redistribution(mut self, mode: Redistribution) -> Self {
        self.redistribution = mode;
        self
    }

    /// Sets the restart intensity: at most `max_restarts` within `max_seconds`.
    #[must_use]
    pub fn intensity(mut self, max_restarts: u32, max_seconds: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.max_seconds = max_seconds;
        self
    }

    /// Sets the sync interval of both replicas (default 50 ms).
    #[must_use]
    pub fn sync_interval(mut self, interval: Duration) -> Self {
        self.specs = self.specs.sync_interval(interval);
        self.registry.replica = self.registry.replica.clone().sync_interval(interval);
        self
    }

    /// Sets the shutdown handover wait.
    #[must_use]
    pub fn handover_timeout(mut self, wait: Duration) -> Self {
        self.handover_timeout = wait;
        self
    }

    /// Sets how long the member list must hold before placement acts on it.
    #[must_use]
    pub fn stable_after(mut self, wait: Duration) -> Self {
        self.stable_after = wait;
        self
    }

    /// Sets the periodic reconciliation interval.
    #[must_use]
    pub fn reconcile_interval(mut self, every: Duration) -> Self {
        self.reconcile_interval = every;
        self
    }
}

fn specs_name(name: &str) -> String {
    format!("sup.{name}.specs")
}

fn running_name(name: &str) -> String {
    format!("sup.{name}.running")
}

/// Shared by the handle and the loop.
pub(crate) struct Inner {
    pub(crate) node: String,
    pub(crate) incarnation: u64,
    pub(crate) specs: SpecReplica,
    pub(crate) registry: Registry,
    pub(crate) options: SupervisorOptions,
}

/// A distributed dynamic supervisor. Cheap to clone; every clone is the same supervisor.
/// See the [module docs](self).
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
    commands: mpsc::UnboundedSender<reconcile::Command>,
    _guard: Arc<StopOnDrop>,
}

/// Stops the loop (and this node's children) when the last handle is dropped: a supervisor
/// nobody holds must not keep children running that nobody can terminate.
struct StopOnDrop(mpsc::UnboundedSender<reconcile::Command>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(reconcile::Command::Stop);
    }
}

impl Supervisor {
    /// Starts the supervisor on `node`: its registry of running children (which waits, up to
    /// `options.registry.ready_timeout`, for the other members' registrations), its
    /// desired-state replica and its reconciliation loop.
    ///
    /// # Errors
    /// The replicas' and the registry's start errors; [`SupervisorError::Watcher`].
    pub async fn start(node: &Node, options: SupervisorOptions) -> Result<Self, SupervisorError> {
        let registry = Registry::start(node, registry_options(&options)).await?;
        let specs = SpecReplica::start(node, specs_options(&options)).await?;
        Self::over(node.name(), specs, registry, options).await
    }

    /// Like [`start`](Self::start) without a cluster: `node_name` names this node, which
    /// runs every child (tests, single-node use).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn start_local(
        node_name: &str,
        options: SupervisorOptions,
    ) -> Result<Self, SupervisorError> {
        let registry = Registry::start_local(node_name, registry_options(&options)).await?;
        let specs = SpecReplica::start_local(specs_options(&options)).await?;
        Self::over(node_name, specs, registry, options).await
    }

    async fn over(
        node: &str,
        specs: SpecReplica,
        registry: Registry,
        options: SupervisorOptions,
    ) -> Result<Self, SupervisorError> {
        let inner = Arc::new(Inner {
            node: node.to_owned(),
            // The specs replica's id is fresh per start without storage; with storage it is
            // kept, so mix in the registry's (always fresh) replica id.
            incarnation: registry.replica().id().as_u64(),
            specs,
            registry,
            options,
        });
        let commands = reconcile::spawn(inner.clone()).await?;
        Ok(Supervisor {
            inner,
            _guard: Arc::new(StopOnDrop(commands.clone())),
            commands,
        })
    }

    /// Wants child `spec.id` to run somewhere: writes its spec (the node that owns it starts
    /// it within about a sync interval). Returns once the spec is written here.
    ///
    /// # Errors
    /// [`SupervisorError::AlreadyPresent`] if a spec with this id exists (nothing written);
    /// [`SupervisorError::UnknownKind`] if this node has no factory for the kind;
    /// [`SupervisorError::NoQuorum`]; [`SupervisorError::ShutDown`]; the replica's errors.
    pub async fn start_child(&self, spec: ChildSpec) -> Result<(), SupervisorError> {
        if self.commands.is_closed() {
            return Err(SupervisorError::ShutDown);
        }
        if !self.inner.options.kinds.contains_key(&spec.kind) {
            return Err(SupervisorError::UnknownKind(spec.kind));
        }
        if !self
            .inner
            .options
            .strategy
            .has_quorum(&reconcile::live(&self.inner))
        {
            return Err(SupervisorError::NoQuorum);
        }
        let key = Key::Spec(spec.id.clone());
        if self.inner.specs.get(&key).is_some() {
            let node = self
                .inner
                .registry
                .whereis(&spec.id)
                .map(|e| e.node.to_string());
            return Err(SupervisorError::AlreadyPresent { id: spec.id, node });
        }
        self.inner.specs.put(key, Value::from_spec(&spec)).await?;
        let _ = self.commands.send(reconcile::Command::Wake);
        Ok(())
    }

    /// Removes child `id`'s spec (and its failed mark); the running copy stops wherever it
    /// runs, as soon as that node sees the removal.
    ///
    /// # Errors
    /// [`SupervisorError::NotFound`] if there is no such child; the replica's errors.
    pub async fn terminate_child(&self, id: &str) -> Result<(), SupervisorError> {
        let spec = Key::Spec(id.to_owned());
        let failed = Key::Failed(id.to_owned());
        if self.inner.specs.get(&spec).is_none() && self.inner.specs.get(&failed).is_none() {
            return Err(SupervisorError::NotFound(id.to_owned()));
        }
        self.inner.specs.delete(&spec).await?;
        self.inner.specs.delete(&failed).await?;
        let _ = self.commands.send(reconcile::Command::Wake);
        Ok(())
    }

    /// Every child the cluster wants, sorted by id, with where it runs as this node sees it.
    /// Read from this node's replicas: no call to other nodes.
    pub fn which_children(&self) -> Vec<ChildInfo> {
        let inner = &self.inner;
        let (specs, failed) = read_specs(inner);
        specs
            .into_iter()
            .map(|spec| {
                let status = match failed.get(&spec.id) {
                    Some((node, reason)) => ChildStatus::Failed {
                        node: node.clone(),
                        reason: reason.clone(),
                    },
                    None => match inner.registry.whereis(&spec.id) {
                        Some(entry) => ChildStatus::Running {
                            node: entry.node.to_string(),
                        },
                        None => ChildStatus::Pending,
                    },
                };
                ChildInfo {
                    id: spec.id,
                    kind: spec.kind,
                    restart: spec.restart,
                    status,
                }
            })
            .collect()
    }

    /// How many children are wanted, running, failed and pending, as this node sees it.
    pub fn count_children(&self) -> ChildCounts {
        let mut counts = ChildCounts::default();
        for child in self.which_children() {
            counts.specs += 1;
            match child.status {
                ChildStatus::Running { .. } => counts.running += 1,
                ChildStatus::Failed { .. } => counts.failed += 1,
                ChildStatus::Pending => counts.pending += 1,
            }
        }
        counts
    }

    /// The running child `id`, to `cast`/`call` (see [`Registry::lookup`]: `M` must be the
    /// child's message type).
    pub fn lookup<M: ractor::Message>(&self, id: &str) -> Option<crate::registry::NamedActor<M>> {
        self.inner.registry.lookup(id)
    }

    /// The node child `id` runs on, as this node sees it.
    pub fn whereis(&self, id: &str) -> Option<String> {
        self.inner.registry.whereis(id).map(|e| e.node.to_string())
    }

    /// The node that should run child `id` under the current eligible members (the pure
    /// placement answer; `None` without quorum).
    pub fn owner_of(&self, id: &str) -> Option<String> {
        let live = reconcile::live(&self.inner);
        if !self.inner.options.strategy.has_quorum(&live) {
            return None;
        }
        let eligible = reconcile::eligible(&self.inner, &live);
        self.inner.options.strategy.owner(id, &eligible)
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// The registry the running children are registered in (their names are their ids).
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The desired-state replica (stats, neighbours).
    pub fn specs(&self) -> &SpecReplica {
        &self.inner.specs
    }

    /// Leaves gracefully: marks this node draining (no child is placed here any more),
    /// stops this node's children, waits up to
    /// [`handover_timeout`](SupervisorOptions::handover_timeout) until each of them runs
    /// elsewhere (or is no longer wanted), then stops the loop, the registry and the
    /// replica. Call it before [`Node::shutdown`]. Returns the ids that were not seen
    /// running elsewhere in time (they start elsewhere once this node is gone).
    ///
    /// # Errors
    /// The replicas' stop errors; [`SupervisorError::ShutDown`] if already shut down.
    pub async fn shutdown(self) -> Result<Vec<ChildId>, SupervisorError> {
        let inner = self.inner.clone();
        inner
            .specs
            .put(
                Key::Draining {
                    node: inner.node.clone(),
                    incarnation: inner.incarnation,
                },
                Value::Draining,
            )
            .await?;
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(reconcile::Command::Drain(tx))
            .map_err(|_| SupervisorError::ShutDown)?;
        let handed = rx.await.map_err(|_| SupervisorError::ShutDown)?;
        let end = tokio::time::Instant::now() + inner.options.handover_timeout;
        let mut waiting = handed;
        loop {
            waiting.retain(|id| {
                let wanted = inner.specs.get(&Key::Spec(id.clone())).is_some()
                    && inner.specs.get(&Key::Failed(id.clone())).is_none();
                let elsewhere = inner
                    .registry
                    .whereis(id)
                    .is_some_and(|e| e.node != inner.node);
                wanted && !elsewhere
            });
            // Alone (or every other node draining too): nobody can take them over.
            let live = reconcile::live(&inner);
            let takers = reconcile::eligible(&inner, &live)
                .into_iter()
                .any(|n| n != inner.node);
            if waiting.is_empty() || !takers || tokio::time::Instant::now() >= end {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if !waiting.is_empty() {
            tracing::warn!(
                count = waiting.len(),
                "supervisor: children not seen running elsewhere before leaving"
            );
        }
        let _ = self.commands.send(reconcile::Command::Stop);
        drop(self);
        // Side by side: each waits for its replica's handover.
        let (registry, specs) =
            tokio::join!(inner.registry.clone().stop(), inner.specs.clone().stop());
        registry?;
        specs?;
        Ok(waiting)
    }
}

fn registry_options(options: &SupervisorOptions) -> RegistryOptions {
    let mut registry = options.registry.clone();
    registry.replica.name = running_name(&options.name);
    registry
}

fn specs_options(options: &SupervisorOptions) -> ReplicaOptions {
    let mut specs = options.specs.clone();
    specs.name = specs_name(&options.name);
    specs
}

/// The specs, sorted by id, and the failed marks (id -> (node, reason)).
pub(crate) fn read_specs(inner: &Inner) -> (Vec<ChildSpec>, HashMap<ChildId, (String, String)>) {
    inner.specs.read(|map| {
        let mut specs = Vec::new();
        let mut failed = HashMap::new();
        for (key, value) in map.iter() {
            match (key, value) {
                (Key::Spec(id), v) => specs.extend(v.to_spec(id)),
                (Key::Failed(id), Value::Failed { node, reason }) => {
                    failed.insert(id.clone(), (node.clone(), reason.clone()));
                }
                _ => {}
            }
        }
        specs.sort_by(|a, b| a.id.cmp(&b.id));
        (specs, failed)
    })
}
