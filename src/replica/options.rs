//! How a replica is configured.

use crate::storage::{RedbConfig, Storage};
use ractor::ActorCell;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// When a write call (`put`, `delete`, `mutate`) returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ack {
    /// Once the write is in the replica's storage as durably as the storage makes it (with
    /// [`RedbStorage`](crate::storage::RedbStorage)'s default durability: fsynced). Writes that
    /// arrive while a commit is running share the next one (group commit), so many concurrent
    /// writers pay one fsync between them. The default.
    #[default]
    Durable,
    /// Once the write is applied in memory; storage is written behind by the same group commit.
    /// A crash may lose the writes of the last commit in flight (typically well under a
    /// millisecond's worth); neighbours that already received them give them back on repair.
    Applied,
}

/// How many neighbours must acknowledge a write before the write call returns (Akka's
/// `WriteLocal` / `WriteMajority` / `WriteAll`). Whatever the concern, a write is applied
/// locally first and spreads to every neighbour in time; the concern only says how long the
/// caller waits, and a timeout is [`ReplicaError::NotAcknowledged`](super::ReplicaError),
/// not a failed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteConcern {
    /// Return once the write is local (and durable, per [`Ack`]). The default.
    #[default]
    Local,
    /// Wait until a majority of the group (this node and its neighbours) has the write: with
    /// `n` neighbours, `(n + 1) / 2` of them must acknowledge it.
    Majority(Duration),
    /// Wait until every neighbour has acknowledged the write.
    All(Duration),
}

/// How much of the neighbours' state a read must include, for
/// [`Replica::until_caught_up`](super::Replica::until_caught_up) (Akka's `ReadLocal` /
/// `ReadMajority` / `ReadAll`).
///
/// Reads are always local; a concern asks every neighbour what it holds and waits until this
/// replica holds it too (the answers are taken after the call began, so a write a neighbour
/// had before the call is covered). With [`WriteConcern::Majority`] on the writes and
/// `Majority` here, a read includes every write acknowledged before it began: the two
/// majorities of the group share a node. A timeout is
/// [`ReplicaError::NotCaughtUp`](super::ReplicaError::NotCaughtUp); the local state can still
/// be read, it just may lack some of the neighbours' writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadConcern {
    /// Read what is here. The default.
    #[default]
    Local,
    /// Wait until this replica includes what a majority of the group held: with `n`
    /// neighbours, the state of `(n + 1) / 2` of them.
    Majority(Duration),
    /// Wait until this replica includes what every neighbour held.
    All(Duration),
}

/// Options of a replica, with their defaults.
///
/// ```
/// use herd::replica::{Ack, ReplicaOptions};
/// use herd::storage::RedbConfig;
/// use std::time::Duration;
///
/// let dir = tempfile::tempdir().unwrap();
/// let options = ReplicaOptions::new("config")
///     .sync_interval(Duration::from_millis(20))
///     // The store is the file `config.redb` in `dir`: the name is given once.
///     .redb(dir.path(), RedbConfig::durable())
///     .ack(Ack::Applied);
/// assert_eq!(options.name, "config");
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ReplicaOptions {
    /// The replica's name: replicas of the same name on different nodes replicate each other.
    /// With [`redb`](Self::redb) it also names the storage file; a store given with
    /// [`storage`](Self::storage) must have been opened for the same name.
    pub name: String,
    /// How often deltas and digests are sent to neighbours. Default 50 ms. A shorter interval
    /// lowers convergence latency and raises idle traffic (one 16-byte digest per neighbour per
    /// interval when converged).
    pub sync_interval: Duration,
    /// The largest sync message, in bytes. Default 1 MiB, at least 1 KiB. A larger
    /// divergence is repaired in several messages; a single write larger than this is
    /// refused. With [`Replica::start`](super::Replica::start) it must not exceed the node's
    /// `max_message_size`.
    pub max_sync_size: usize,
    /// Where the state lives across restarts; `None` (the default) keeps it in memory only, like
    /// DeltaCrdt. Use [`RedbStorage`](crate::storage::RedbStorage) for the durable default.
    pub storage: Option<Arc<dyn Storage>>,
    /// When writes return; default [`Ack::Durable`]. Ignored without storage.
    pub ack: Ack,
    /// How many neighbours a write waits for; default [`WriteConcern::Local`] (none).
    pub write_concern: WriteConcern,
    /// Diff batches a subscriber may have queued before it is marked lagged (see
    /// [`Update::Lagged`](super::Update::Lagged)). Default 1,024.
    pub subscription_capacity: usize,
    /// The actor to link the replica's actor to, as its supervisor; default none.
    pub supervisor: Option<ActorCell>,
    /// Send a local write to idle neighbours at once rather than at the next tick (see
    /// [`SyncConfig::send_when_idle`](crate::sync::SyncConfig::send_when_idle)): about the
    /// round trip instead of up to one [`sync_interval`](Self::sync_interval) of latency
    /// when writes are rare. Writes made while a message is in flight group until it is
    /// acknowledged. Default off; the [`Agent`](crate::agent::Agent) turns it on.
    pub send_when_idle: bool,
    /// A redb store to open at start, under this directory, named after the replica.
    redb: Option<(PathBuf, RedbConfig)>,
}

impl ReplicaOptions {
    /// Defaults for a replica called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        ReplicaOptions {
            name: name.into(),
            sync_interval: Duration::from_millis(50),
            max_sync_size: 1 << 20,
            storage: None,
            ack: Ack::Durable,
            write_concern: WriteConcern::Local,
            subscription_capacity: 1024,
            supervisor: None,
            send_when_idle: false,
            redb: None,
        }
    }

    /// Keeps the state in a [`RedbStorage`](crate::storage::RedbStorage) file named after the
    /// replica, `<data_dir>/<name>.redb`, opened when the replica starts.
    #[must_use]
    pub fn redb(mut self, data_dir: impl Into<PathBuf>, config: RedbConfig) -> Self {
        self.redb = Some((data_dir.into(), config));
        self.storage = None;
        self
    }

    /// The redb store to open at start, if [`redb`](Self::redb) was called.
    pub(crate) fn redb_spec(&self) -> Option<&(PathBuf, RedbConfig)> {
        self.redb.as_ref()
    }

    /// Sets [`write_concern`](Self::write_concern).
    #[must_use]
    pub fn write_concern(mut self, concern: WriteConcern) -> Self {
        self.write_concern = concern;
        self
    }

    /// Sets [`send_when_idle`](Self::send_when_idle).
    #[must_use]
    pub fn send_when_idle(mut self, on: bool) -> Self {
        self.send_when_idle = on;
        self
    }

    /// Sets [`subscription_capacity`](Self::subscription_capacity) (at least 1).
    #[must_use]
    pub fn subscription_capacity(mut self, batches: usize) -> Self {
        self.subscription_capacity = batches.max(1);
        self
    }

    /// Links the replica's actor to `supervisor` (see [`ractor::Actor::spawn_linked`]): the
    /// supervisor is told when the replica's actor fails or stops, and the replica's actor is
    /// stopped with it.
    #[must_use]
    pub fn supervisor(mut self, supervisor: ActorCell) -> Self {
        self.supervisor = Some(supervisor);
        self
    }

    /// Sets [`sync_interval`](Self::sync_interval) (at least 1 ms).
    #[must_use]
    pub fn sync_interval(mut self, interval: Duration) -> Self {
        self.sync_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Sets [`max_sync_size`](Self::max_sync_size).
    #[must_use]
    pub fn max_sync_size(mut self, bytes: usize) -> Self {
        self.max_sync_size = bytes;
        self
    }

    /// Keeps the state in `storage`. A store opened for a replica of another name (see
    /// [`Storage::replica_name`]) makes the start fail with
    /// [`ReplicaError::NameMismatch`](super::ReplicaError::NameMismatch).
    #[must_use]
    pub fn storage(mut self, storage: impl Storage + 'static) -> Self {
        self.storage = Some(Arc::new(storage));
        self.redb = None;
        self
    }

    /// Keeps the state in a shared `storage` (see [`storage`](Self::storage)).
    #[must_use]
    pub fn shared_storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = Some(storage);
        self.redb = None;
        self
    }

    /// Sets [`ack`](Self::ack).
    #[must_use]
    pub fn ack(mut self, ack: Ack) -> Self {
        self.ack = ack;
        self
    }
}

impl std::fmt::Debug for ReplicaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaOptions")
            .field("name", &self.name)
            .field("sync_interval", &self.sync_interval)
            .field("max_sync_size", &self.max_sync_size)
            .field("storage", &self.storage.as_ref().map(|_| "dyn Storage"))
            .field("redb", &self.redb)
            .field("ack", &self.ack)
            .field("write_concern", &self.write_concern)
            .field("subscription_capacity", &self.subscription_capacity)
            .field(
                "supervisor",
                &self.supervisor.as_ref().map(ActorCell::get_id),
            )
            .finish()
    }
}
