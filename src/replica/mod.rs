//! Replicas: the runtime around one named CRDT.
//!
//! A [`Replica`] is a ractor actor owning one map-shaped CRDT, its Merkle tree and the sync
//! protocol's state ([`crate::sync::SyncState`]), its subscribers and its storage, with a
//! typed handle for each replicable type:
//!
//! | type | alias | typed methods | merge rule | a diff names |
//! |---|---|---|---|---|
//! | [`AwLwwMap<K, V>`](crate::crdt::AwLwwMap) | [`Kv`] (`String` → `String`) | `put`, `put_many`, `get`, `delete`, `to_map`, `len` | add-wins keys; values last-writer-wins by (hybrid-logical timestamp, replica id) | the key |
//! | [`OrSet<T>`](crate::crdt::OrSet) | [`SetReplica<T>`] | `add`, `remove`, `contains`, `to_vec`, `len` | add-wins: an add concurrent with a remove survives | the element |
//! | [`OrMap<K, Counter>`](crate::crdt::Counter) | [`CounterMap<K>`] | `increment`, `decrement`, `value`, `reset`, `to_map` | the sum of every replica's running total; a reset removes what it saw | the key, with the sum |
//! | [`OrMap<K, MvRegister<V>>`](crate::crdt::MvRegister) | [`MvMap<K, V>`] | `write`, `values`, `remove` | a write replaces what it saw; concurrent writes are all kept | the key, with every value |
//! | [`Document<V>`](crate::crdt::Document) | [`DocReplica<V>`] | `set`, `get`, `remove`, `leaves` (at a [`Path`](crate::crdt::Path)) | per leaf last-writer-wins; a removed field stays removed unless a concurrent write re-adds it | the leaf's path |
//! | any [`OrMap<K, C>`](crate::crdt::OrMap) with `C:` [`Visible`] ([`AwLwwRegister`](crate::crdt::AwLwwRegister), [`OrSet`], [`EwFlag`](crate::crdt::EwFlag), and the above) | — | `mutate`, `read` | `C`'s | the key |
//!
//! Every replica also has [`mutate`](Replica::mutate) (any mutator, exact diffs),
//! [`read`](Replica::read), [`subscribe`](Replica::subscribe) and
//! [`subscribe_with_snapshot`](Replica::subscribe_with_snapshot) (bounded, see [`Update`]),
//! [`until_replicated`](Replica::until_replicated) ([`WriteConcern`]),
//! [`set_neighbours`](Replica::set_neighbours), [`stats`](Replica::stats),
//! [`flush`](Replica::flush), [`stop`](Replica::stop) and [`actor`](Replica::actor).
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
//!
//! # Observability
//! `tracing` spans: `tick` (trace), `inbound` (debug, with the peer and the bytes), `members`,
//! and `commit` (debug) around each storage commit. The counters of [`ReplicaStats`] are also
//! published through the [`metrics`](https://docs.rs/metrics) facade every 20 sync intervals
//! ([`ReplicaStats::publish_metrics`]); herd installs no exporter, so a service's own
//! Prometheus or OpenTelemetry recorder picks them up.

mod actor;
mod cluster_glue;
mod committer;
mod error;
mod handle;
#[cfg(any(test, feature = "test-hooks"))]
mod hooks;
mod kv;
mod options;
mod persist;
mod shared;
mod stats;
mod subscription;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
mod typed;
mod view;
mod views;

use crate::crdt::{AwLwwMap, Counter, Document, MvRegister, OrMap, OrSet};

pub use error::ReplicaError;
pub use handle::Replica;
#[cfg(any(test, feature = "test-hooks"))]
pub use hooks::Fault;
pub use options::{Ack, ReadConcern, ReplicaOptions, WriteConcern};
pub use stats::ReplicaStats;
pub use subscription::{Snapshot, Subscription, Update};
pub use view::{Diff, MapView};
pub use views::{ReplicaKey, ReplicaValue, Visible};

/// Diff batches the Registry and Presence may have queued before their view lags. Each local
/// write is one batch; a lag rebuilds their view over every entry, which at 100,000 entries
/// costs more than the queue (a few MB at worst).
pub(crate) const PRODUCT_DIFF_QUEUE: usize = 1 << 16;

/// The string-to-string map replica: the type of the quick start and of the node program, and
/// the one to reach for when keys and values are text (configuration, feature flags). For
/// other key or value types, use `Replica<AwLwwMap<K, V>>` directly: every method is the same.
pub type Kv = Replica<AwLwwMap<String, String>>;

/// A replicated add-wins set.
pub type SetReplica<T> = Replica<OrSet<T>>;

/// A replicated map of counters (one key for a single counter).
pub type CounterMap<K> = Replica<OrMap<K, Counter>>;

/// A replicated map of multi-value registers: concurrent writes are all kept and shown.
pub type MvMap<K, V> = Replica<OrMap<K, MvRegister<V>>>;

/// A replicated nested document: one last-writer-wins register per leaf.
pub type DocReplica<V> = Replica<Document<V>>;

/// Compile-time checks that handles can cross threads and tasks.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Kv>();
    send_sync::<SetReplica<String>>();
    send_sync::<CounterMap<String>>();
    send_sync::<MvMap<String, String>>();
    send_sync::<DocReplica<String>>();
    send_sync::<ReplicaOptions>();
    send_sync::<ReplicaError>();
    const fn send<T: Send>() {}
    send::<Subscription<AwLwwMap<String, String>>>();
};
