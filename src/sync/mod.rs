//! The anti-entropy protocol, sans-IO: how two replicas that missed each other's messages,
//! were partitioned, or restarted come back to the same state while sending close to the
//! minimum number of bytes.
//!
//! [`SyncState`] is a plain state machine. It owns one CRDT, its Merkle tree, the buffer of
//! deltas not yet acknowledged by each neighbour, and per-neighbour protocol state. It never
//! reads a clock or touches a socket: the caller feeds it
//! [`handle_tick`](SyncState::handle_tick) (every `sync_interval`),
//! [`handle_message`](SyncState::handle_message) (bytes from a neighbour) and
//! [`set_neighbours`](SyncState::set_neighbours), makes local changes with
//! [`mutate`](SyncState::mutate), and after each call drains
//! [`poll_transmit`](SyncState::poll_transmit) (bytes to send) and
//! [`poll_event`](SyncState::poll_event) (keys changed by a neighbour).
//!
//! # Two paths
//! * **Delta path** (steady state, Almeida et al.): every local change is a small delta,
//!   buffered with a sequence number and sent to each neighbour on the next tick until
//!   acknowledged. A delta is never sent back to the neighbour it came from (BP), and a
//!   received delta is reduced to the part that was new here, Δ(d, state), before it is
//!   forwarded (RR) — Enes et al., ICDE 2019.
//! * **Repair path** (new neighbour, partition, restart, dropped messages): when no delta is in
//!   flight, a neighbour gets a 16-byte digest (Merkle root and context hash). If roots differ,
//!   the two exchange causal contexts and each sends, for every key holding a write the other
//!   has not seen, *all* its entries under that key; the receiver decides removals with the
//!   sender's context. What remains after that are removals the other side missed; those are
//!   found by descending the Merkle trees into differing subtrees only, and comparing per-key
//!   digests in the differing leaf buckets. Every message stays under `max_sync_size`; a large
//!   divergence takes several bounded rounds, each making progress.
//!
//! A converged, idle pair exchanges one digest per tick each way and nothing else.
//!
//! # Trust
//! Neighbours are trusted to follow the protocol (they passed the cluster's cookie): dots
//! name writes uniquely, and a context a neighbour sends is honest. Malformed bytes are
//! refused with a typed error and change nothing.

mod acks;
mod config;
mod keys;
pub(crate) mod message;
mod pack;
mod probe;
mod query;
mod repair;
mod rounds;
mod state;
#[cfg(test)]
mod tests;

pub use config::SyncConfig;
pub use state::{Changes, SyncEvent, SyncState, SyncStats, SyncWarning, Transmit};

use crate::crdt::{AwLwwMap, DotFun, DotMap, DotSet, DotStore, Embeddable, Lww, OrMap, OrSet};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::hash::Hash;
use thiserror::Error;

/// A map-shaped CRDT the protocol can sync: its data is a [`DotMap`] from keys to dot stores,
/// so it can be compared and repaired key by key.
pub trait MapCrdt:
    Embeddable<Store = DotMap<Self::Key, Self::Value>> + Serialize + DeserializeOwned
{
    /// The map's key.
    type Key: Hash + Eq + Clone + Debug + Serialize + DeserializeOwned;
    /// The dot store under each key.
    type Value: DotStore + Serialize + DeserializeOwned;
}

impl<K, V> MapCrdt for AwLwwMap<K, V>
where
    K: Hash + Eq + Clone + Debug + Serialize + DeserializeOwned,
    V: Clone + PartialEq + Debug + Serialize + DeserializeOwned,
{
    type Key = K;
    type Value = DotFun<Lww<V>>;
}

impl<T> MapCrdt for OrSet<T>
where
    T: Hash + Eq + Clone + Debug + Serialize + DeserializeOwned,
{
    type Key = T;
    type Value = DotSet;
}

impl<K, C> MapCrdt for OrMap<K, C>
where
    K: Hash + Eq + Clone + Debug + Serialize + DeserializeOwned,
    C: Embeddable,
    C::Store: Serialize + DeserializeOwned,
{
    type Key = K;
    type Value = C::Store;
}

/// Why a message was refused. In every case the replica's state is unchanged and the refusal
/// is counted in [`SyncStats::rejected_messages`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SyncError {
    /// The bytes are not a message of this protocol version (malformed, truncated, oversized,
    /// or from a newer version).
    #[error("undecodable message: {0}")]
    Codec(#[from] crate::codec::CodecError),
    /// The message came from a replica that is not a neighbour.
    #[error("message from a replica that is not a neighbour")]
    UnknownNeighbour,
    /// The message names a Merkle node outside the tree's shape (a different shape, or garbage).
    #[error("message names an invalid Merkle node: {0}")]
    Merkle(#[from] crate::merkle::MerkleError),
}
