//! Why a replica call failed.

use crate::codec::CodecError;
use crate::crdt::CausalError;
use crate::storage::StorageError;
use thiserror::Error;

/// Errors of the replica API. A failed write leaves no trace on disk; see each variant for
/// whether it was applied in memory.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// The storage failed. Raised by a durable write whose commit failed: the write is applied
    /// in memory (and will reach neighbours) but is not known to be on disk.
    #[error("storage failed: {0}")]
    Storage(#[from] StorageError),
    /// A previous commit failed, and the replica no longer promises durability. Restart it.
    #[error("storage failed earlier: {0}")]
    StorageFailed(String),
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
    /// The replica's actor could not be started or has stopped.
    #[error("replica actor: {0}")]
    Actor(String),
    /// The cluster refused (joining the replica's group, or sending a frame).
    #[error("cluster: {0}")]
    Cluster(String),
}
