//! Replicas: the runtime around one named CRDT.
//!
//! A [`Replica`] is a ractor actor owning one map CRDT, its Merkle tree and the sync
//! protocol's state ([`crate::sync::SyncState`]), its subscribers and its storage, with a
//! typed handle in the spirit of DeltaCrdt: [`put`](Replica::put),
//! [`delete`](Replica::delete), [`get`](Replica::get), [`to_map`](Replica::to_map),
//! [`mutate`](Replica::mutate), [`read`](Replica::read),
//! [`set_neighbours`](Replica::set_neighbours) and [`subscribe`](Replica::subscribe).
//!
//! # Who does what
//! * **Handles** read and write the state directly, under a short lock (see `shared.rs` for
//!   why not through the mailbox): a write applies the mutator, indexes the key in the Merkle
//!   tree, buffers the delta for neighbours, publishes diffs, and records the key for storage.
//! * **The actor** takes a tick every `sync_interval` (deltas and digests go out) and the
//!   neighbours' messages (joined; only what was new is published and forwarded).
//! * **The committer thread** writes changed keys and the causal context to storage in one
//!   atomic batch per commit. Writes that arrive while a commit runs share the next one, so
//!   a durable write waits for at most two fsyncs however many writers there are.
//!
//! # Durability
//! With storage and [`Ack::Durable`] (the default), `put` returns once its write is on disk:
//! a crash after that loses nothing. With [`Ack::Applied`], writes return at once and a crash
//! may lose the last commit in flight. Remote writes are stored by the same commits; losing
//! some in a crash is harmless, since the neighbours that sent them still hold them and the
//! repair path brings them back.
//!
//! **Nothing leaves before it is durable.** The actor sends a message only after the state it
//! was read from is committed (and flushed, for a write-behind store). A restarted replica
//! keeps its id and numbers its next write after the last one stored; had a neighbour already
//! received a later, unstored one, the new write would reuse that write's dot and be ignored
//! by everyone. The cost: a sync message waits for at most one commit.
//!
//! A replica restarted on its storage comes back with its state and its replica id. A store
//! that is empty (new, or wiped) gets a fresh random id: reusing an id with a forgotten
//! history would mint dots other replicas already know.

mod actor;
mod cluster_glue;
mod error;
mod handle;
mod options;
mod persist;
mod shared;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
mod view;

pub use error::ReplicaError;
pub use handle::{Fault, Kv, Replica, ReplicaStats};
pub use options::{Ack, ReplicaOptions};
pub use view::{Diff, MapView};
