//! How a replica is configured.

use crate::storage::Storage;
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

/// Options of a replica, with their defaults.
///
/// ```
/// use herd::replica::{Ack, ReplicaOptions};
/// use herd::storage::MemoryStorage;
/// use std::time::Duration;
///
/// let options = ReplicaOptions::new("config")
///     .sync_interval(Duration::from_millis(20))
///     .storage(MemoryStorage::new())
///     .ack(Ack::Applied);
/// assert_eq!(options.name, "config");
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ReplicaOptions {
    /// The replica's name: replicas of the same name on different nodes replicate each other.
    /// It also names the replica's storage file.
    pub name: String,
    /// How often deltas and digests are sent to neighbours. Default 50 ms. A shorter interval
    /// lowers convergence latency and raises idle traffic (one 16-byte digest per neighbour per
    /// interval when converged).
    pub sync_interval: Duration,
    /// The largest sync message, in bytes. Default 1 MiB. A larger divergence is repaired in
    /// several messages; a single write larger than this is refused.
    pub max_sync_size: usize,
    /// Where the state lives across restarts; `None` (the default) keeps it in memory only, like
    /// DeltaCrdt. Use [`RedbStorage`](crate::storage::RedbStorage) for the durable default.
    pub storage: Option<Arc<dyn Storage>>,
    /// When writes return; default [`Ack::Durable`]. Ignored without storage.
    pub ack: Ack,
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
        }
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

    /// Keeps the state in `storage`.
    #[must_use]
    pub fn storage(mut self, storage: impl Storage + 'static) -> Self {
        self.storage = Some(Arc::new(storage));
        self
    }

    /// Keeps the state in a shared `storage`.
    #[must_use]
    pub fn shared_storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = Some(storage);
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
            .field("ack", &self.ack)
            .finish()
    }
}
