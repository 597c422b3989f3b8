//! Why a replica call failed.

use crate::cluster::ClusterError;
use crate::codec::CodecError;
use crate::crdt::CausalError;
use crate::storage::StorageError;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Errors of the replica API. A failed write leaves no trace on disk; each variant says
/// whether the write was applied in memory.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// The storage failed. Raised by a durable write whose commit failed: the write is applied
    /// in memory (and will reach neighbours) but is not known to be on disk.
    #[error("storage failed: {0}")]
    Storage(#[from] StorageError),
    /// A previous commit failed (the cause is the source), and the replica no longer promises
    /// durability: the write is applied in memory only. Restart the replica.
    #[error("storage failed earlier: {0}")]
    StorageFailed(#[source] Arc<ReplicaError>),
    /// The stored state could not be decoded: a damaged or foreign store. Nothing was loaded
    /// and nothing was written.
    #[error("stored state is unreadable: {0}")]
    CorruptState(#[from] CodecError),
    /// The stored state decoded but breaks an invariant (a value the context does not cover).
    #[error("stored state is inconsistent: {0}")]
    InconsistentState(#[from] CausalError),
    /// The write is larger than `max_sync_size` could ever carry to a neighbour: refused,
    /// nothing was applied.
    #[error("write of {size} bytes exceeds max_sync_size ({limit} bytes)")]
    TooLarge {
        /// The encoded size of the write.
        size: usize,
        /// The configured `max_sync_size`.
        limit: usize,
    },
    /// The replica's `max_sync_size` is larger than the node's `max_message_size`: its larger
    /// messages would all be refused by the transport. Nothing was started.
    #[error(
        "max_sync_size ({max_sync_size} bytes) exceeds the node's max_message_size ({max_message_size} bytes)"
    )]
    LimitsDisagree {
        /// The replica's `max_sync_size`.
        max_sync_size: usize,
        /// The node's `max_message_size`.
        max_message_size: usize,
    },
    /// The replica's `max_sync_size` is below the smallest that can carry a write and the
    /// protocol's messages. Nothing was started.
    #[error("max_sync_size ({max_sync_size} bytes) is below the minimum of {min} bytes")]
    SyncSizeTooSmall {
        /// The replica's `max_sync_size`.
        max_sync_size: usize,
        /// The smallest accepted.
        min: usize,
    },
    /// The storage given belongs to a replica of another name. Nothing was started.
    #[error("storage of replica {storage:?} given to replica {replica:?}")]
    NameMismatch {
        /// The replica's name.
        replica: String,
        /// The name the storage was opened for.
        storage: String,
    },
    /// The replica's actor could not be started. Nothing was started.
    #[error("replica actor could not start: {0}")]
    Spawn(#[from] ractor::SpawnErr),
    /// The replica's committer thread could not be started. Nothing was started.
    #[error("replica committer thread could not start: {0}")]
    Thread(#[source] std::io::Error),
    /// A blocking storage task panicked or was cancelled; nothing is known to be stored.
    #[error("storage task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The replica has stopped: [`stop`](super::Replica::stop) was called, its last handle
    /// was dropped, or its actor died (killed, or stopped by its supervisor). A write made
    /// after that is not applied; one that was waiting for storage is applied in memory but
    /// not known to be stored.
    #[error("the replica has stopped")]
    Stopped,
    /// The cluster refused (joining the replica's group, or sending a frame).
    #[error("cluster: {0}")]
    Cluster(#[from] ClusterError),
    /// The write is applied locally (and durable if the replica's [`Ack`](super::Ack) says
    /// so) and will reach every neighbour in time, but not as many of them acknowledged it
    /// within the time asked for as the [`WriteConcern`](super::WriteConcern) requires.
    #[error(
        "write applied locally; {acknowledged} of {required} neighbour acknowledgements within {waited:?}; it will still spread"
    )]
    NotAcknowledged {
        /// Neighbours that acknowledged the write in time.
        acknowledged: usize,
        /// Acknowledgements the write concern required.
        required: usize,
        /// How long the write waited.
        waited: Duration,
    },
    /// A [`ReadConcern`](super::ReadConcern) was not met in time: the local state may lack
    /// some of the neighbours' writes (it can still be read, and the writes still arrive).
    #[error(
        "{included} of {required} neighbours' state included here within {waited:?}; reading the local state may miss their writes"
    )]
    NotCaughtUp {
        /// Neighbours whose state this replica included in time.
        included: usize,
        /// Neighbours the read concern required.
        required: usize,
        /// How long the read waited.
        waited: Duration,
    },
}
