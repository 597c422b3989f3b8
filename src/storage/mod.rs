//! Where a replica's state lives across restarts.
//!
//! A replica must come back after a crash or a restart with its state **and** its replica id;
//! a node that lost its data must come back as a new replica, with a fresh id, because reusing
//! an id with a forgotten history would mint dots that other replicas already know. This module
//! owns that persistence. It stores opaque bytes: the replica encodes its keys, entries and
//! causal context with [`crate::codec`], so nothing here depends on the CRDT types.
//!
//! It does not own encoding, the choice of replica ids, or when to write and when to
//! [`flush`](Storage::flush): the replica actor decides those.
//!
//! * [`Storage`] is the trait the replica talks to: [`load`](Storage::load) at start,
//!   [`init`](Storage::init) when there was nothing to load, then [`apply`](Storage::apply) one
//!   [`WriteBatch`] per mutation batch, and [`flush`](Storage::flush) on a timer and at shutdown.
//! * [`RedbStorage`] is the durable embedded default: one [redb](https://docs.rs/redb) file per
//!   replica under a data directory. [`Durability`] chooses between an fsync per batch and
//!   write-behind; its docs say exactly what a crash may lose in each mode.
//! * [`MemoryStorage`] is for tests: clones share the same data, so a test can "restart" a
//!   replica on the same store.
//!
//! # The stored state
//!
//! A store is either *empty* ([`load`](Storage::load) returns `None`) or holds one replica:
//! its id, its causal context bytes, and a map from key bytes to entry bytes. A
//! [`WriteBatch`] of upserts, deletes and a new context is applied atomically: after a crash
//! the store holds the state before the batch or after it, never a mix.
//!
//! # Examples
//!
//! ```
//! use herd::storage::{MemoryStorage, Storage, WriteBatch};
//!
//! let store = MemoryStorage::new();
//! // First start: nothing stored, so this is a fresh replica with a fresh id.
//! assert!(store.load()?.is_none());
//! store.init(42)?;
//!
//! let mut batch = WriteBatch::new();
//! batch.put(b"colour".to_vec(), b"<entry bytes>".to_vec());
//! batch.set_context(b"<context bytes>".to_vec());
//! store.apply(&batch)?;
//!
//! // Restart: the same store gives back the id and the state.
//! let restarted = store.clone();
//! let snapshot = restarted.load()?.expect("initialized");
//! assert_eq!(snapshot.replica_id, 42);
//! assert_eq!(snapshot.context, b"<context bytes>");
//! let entries: Vec<_> = snapshot.entries.collect::<Result<_, _>>()?;
//! assert_eq!(entries, vec![(b"colour".to_vec(), b"<entry bytes>".to_vec())]);
//! # Ok::<(), herd::storage::StorageError>(())
//! ```
//!
//! # Figures
//!
//! Measured with `cargo bench --bench storage` (release, a shared 2-core VM, ext4 on a virtual
//! disk; details in the bench and in the project notes). Entries are ~90 bytes under 16-byte
//! keys, each batch also sets a 40-byte context. fsync cost depends on the disk far more than
//! on herd: expect 0.1–1 ms on datacenter SSDs, several ms on consumer disks without a power
//! loss protected cache.
//!
//! | operation | time | rate |
//! |---|---|---|
//! | apply 1 entry, [`Durability::Immediate`] (one fsync) | 395 µs | ~2,500 batches/s |
//! | apply 1 entry, [`Durability::WriteBehind`] | 22.6 µs | ~44,000 batches/s |
//! | apply 1,000 entries, [`Durability::Immediate`] | 2.97 ms | ~336,000 entries/s |
//! | apply 1,000 entries, [`Durability::WriteBehind`] | 2.09 ms | ~478,000 entries/s |
//! | load 100,000 entries (open table, iterate, copy out) | 15.1 ms | ~6.6 M entries/s |
//!
//! A durable commit costs one fsync whatever the batch size, so one durable `apply` per put
//! caps a replica at a few thousand puts per second and adds the fsync to each put's latency.
//! The replica should group commit: gather the mutations that arrive during one commit into
//! the next batch (1,000 entries cost ~8x one entry, not 1,000x), or use write-behind where
//! losing the last `sync_interval` of local writes on a crash is acceptable. Loading a million
//! entries at restart takes about 0.15 s plus decoding.

mod error;
mod memory;
mod redb_store;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use error::{BoxedError, StorageError};
pub use memory::MemoryStorage;
pub use redb_store::{Durability, RedbConfig, RedbStorage};

/// The version of the on-disk layout this build writes and the only one it reads.
///
/// Stored in every [`RedbStorage`] file; a file with another version is refused with
/// [`StorageError::UnsupportedFormat`]. Bump it whenever the tables or the meta records change
/// shape. (The bytes *inside* entries and the context are the replica's, versioned by
/// [`crate::codec`].)
pub const FORMAT_VERSION: u32 = 1;

/// Where a replica keeps its state across restarts.
///
/// Calls are synchronous and may block on disk I/O (an fsync can take milliseconds): call them
/// from a context where blocking is allowed (`tokio::task::spawn_blocking`, a dedicated
/// thread, or an actor whose mailbox can wait).
///
/// The order of calls is: [`load`](Self::load) once at start; if it returned `None`,
/// [`init`](Self::init) with a fresh replica id; then any number of [`apply`](Self::apply) and
/// [`flush`](Self::flush). Implementations are safe to share between threads, but a store is
/// meant to have one writer: one replica.
pub trait Storage: Send + Sync {
    /// The stored replica: its id, its context and an iterator over its entries in key byte
    /// order; `None` if the store holds no replica (a new or wiped store).
    ///
    /// The snapshot is consistent: batches applied while its entries are being read are not
    /// seen by it.
    ///
    /// # Errors
    ///
    /// [`StorageError::Corrupt`], [`StorageError::Foreign`] or
    /// [`StorageError::UnsupportedFormat`] if the stored data cannot be read as a herd store,
    /// and [`StorageError::Io`] or [`StorageError::Backend`] if it cannot be read at all. Errors
    /// met while iterating come out of the iterator. Loading never writes.
    fn load(&self) -> Result<Option<Snapshot>, StorageError>;

    /// Makes this store hold a fresh replica with id `replica_id`, an empty context and no
    /// entries, durably (an fsync even in write-behind mode). Anything stored before is
    /// discarded.
    ///
    /// # Errors
    ///
    /// [`StorageError::CommitUncertain`] if the commit failed (the store holds either the old
    /// state or the fresh replica); any other error means nothing was written.
    fn init(&self, replica_id: u64) -> Result<(), StorageError>;

    /// Applies `batch` atomically: all its upserts, deletes and its context, or none of them.
    ///
    /// When this returns `Ok`, the batch is durable, unless the store was opened in a
    /// write-behind mode (see [`Durability`]), in which case it is durable after the next
    /// successful [`flush`](Self::flush) or background sync.
    ///
    /// # Errors
    ///
    /// [`StorageError::NotInitialized`] before [`init`](Self::init);
    /// [`StorageError::CommitUncertain`] if the commit failed (the batch is wholly stored or
    /// wholly absent); any other error means nothing was written.
    fn apply(&self, batch: &WriteBatch) -> Result<(), StorageError>;

    /// Makes every batch applied so far durable. A no-op when every [`apply`](Self::apply) is
    /// already durable.
    ///
    /// # Errors
    ///
    /// [`StorageError::CommitUncertain`] if the sync failed: the batches applied since the last
    /// successful sync may or may not survive a crash.
    fn flush(&self) -> Result<(), StorageError>;

    /// True when a batch is durable as soon as [`apply`](Self::apply) returns (the default);
    /// false for write-behind stores, which are durable only after [`flush`](Self::flush).
    /// A replica flushes such a store before sending anything read from its state, so a crash
    /// can never forget a write a neighbour already holds.
    fn durable_on_apply(&self) -> bool {
        true
    }

    /// The name of the replica this store was opened for, if it was opened for one (a
    /// [`RedbStorage`] file is named after its replica). A replica refuses to start on a store
    /// of another name, so the name given to the store and to the replica cannot disagree.
    fn replica_name(&self) -> Option<&str> {
        None
    }
}

impl<S: Storage + ?Sized> Storage for Arc<S> {
    fn load(&self) -> Result<Option<Snapshot>, StorageError> {
        (**self).load()
    }
    fn init(&self, replica_id: u64) -> Result<(), StorageError> {
        (**self).init(replica_id)
    }
    fn apply(&self, batch: &WriteBatch) -> Result<(), StorageError> {
        (**self).apply(batch)
    }
    fn flush(&self) -> Result<(), StorageError> {
        (**self).flush()
    }
    fn durable_on_apply(&self) -> bool {
        (**self).durable_on_apply()
    }
    fn replica_name(&self) -> Option<&str> {
        (**self).replica_name()
    }
}

impl<S: Storage + ?Sized> Storage for Box<S> {
    fn load(&self) -> Result<Option<Snapshot>, StorageError> {
        (**self).load()
    }
    fn init(&self, replica_id: u64) -> Result<(), StorageError> {
        (**self).init(replica_id)
    }
    fn apply(&self, batch: &WriteBatch) -> Result<(), StorageError> {
        (**self).apply(batch)
    }
    fn flush(&self) -> Result<(), StorageError> {
        (**self).flush()
    }
    fn durable_on_apply(&self) -> bool {
        (**self).durable_on_apply()
    }
    fn replica_name(&self) -> Option<&str> {
        (**self).replica_name()
    }
}

/// A set of changes applied atomically by [`Storage::apply`]: upserts and deletes of entries
/// by key bytes, and optionally a new causal context.
///
/// The last call for a key wins: a [`put`](Self::put) after a [`delete`](Self::delete) of the
/// same key stores the entry, and the other way round. Deleting a key that is not stored is
/// not an error.
///
/// # Examples
///
/// ```
/// use herd::storage::WriteBatch;
///
/// let mut batch = WriteBatch::new();
/// batch.put(b"a".to_vec(), b"1".to_vec());
/// batch.delete(b"b".to_vec());
/// batch.delete(b"a".to_vec()); // replaces the put of "a"
/// assert_eq!(batch.len(), 2);
/// assert_eq!(batch.changes().collect::<Vec<_>>(), [(&b"a"[..], None), (&b"b"[..], None)]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// Key bytes -> `Some(entry bytes)` to store, `None` to delete. Sorted, which is also the
    /// cheapest order to insert into a B-tree.
    changes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    context: Option<Vec<u8>>,
}

impl WriteBatch {
    /// An empty batch: applying it changes nothing.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `entry` under `key`, replacing what was stored.
    pub fn put(&mut self, key: Vec<u8>, entry: Vec<u8>) -> &mut Self {
        self.changes.insert(key, Some(entry));
        self
    }

    /// Removes the entry stored under `key`, if any.
    pub fn delete(&mut self, key: Vec<u8>) -> &mut Self {
        self.changes.insert(key, None);
        self
    }

    /// Replaces the stored causal context by `context`. Without this call the batch leaves the
    /// context as it was.
    pub fn set_context(&mut self, context: Vec<u8>) -> &mut Self {
        self.context = Some(context);
        self
    }

    /// The changes in key byte order: `(key, Some(entry))` for an upsert, `(key, None)` for a
    /// delete.
    pub fn changes(&self) -> impl ExactSizeIterator<Item = (&[u8], Option<&[u8]>)> + '_ {
        self.changes
            .iter()
            .map(|(key, entry)| (key.as_slice(), entry.as_deref()))
    }

    /// The new context, if the batch sets one.
    #[must_use]
    pub fn context(&self) -> Option<&[u8]> {
        self.context.as_deref()
    }

    /// The number of keys changed (upserts plus deletes).
    #[must_use]
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// Whether applying the batch would change nothing: no key changed and no context set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.context.is_none()
    }

    /// Empties the batch, keeping its allocation for reuse.
    pub fn clear(&mut self) {
        self.changes.clear();
        self.context = None;
    }
}

/// A stored replica, as returned by [`Storage::load`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Snapshot {
    /// The replica id given to [`Storage::init`].
    pub replica_id: u64,
    /// The causal context bytes of the last batch that set one; empty after
    /// [`Storage::init`].
    pub context: Vec<u8>,
    /// The entries, streamed in key byte order so a million of them need not sit in memory
    /// twice.
    pub entries: Entries,
}

/// The stored entries of a [`Snapshot`]: `(key bytes, entry bytes)` pairs in key byte order.
///
/// An item is an error if the entry could not be read (a corrupt page, an I/O error); the
/// caller should stop at the first error. The upper bound of [`Iterator::size_hint`] is the
/// number of entries still to come, for presizing a map.
pub struct Entries {
    inner: Box<dyn Iterator<Item = EntryResult> + Send>,
    remaining: usize,
}

impl Entries {
    /// Wraps an iterator that yields `len` items.
    pub(crate) fn new(
        inner: impl Iterator<Item = EntryResult> + Send + 'static,
        len: usize,
    ) -> Self {
        Self {
            inner: Box::new(inner),
            remaining: len,
        }
    }
}

/// One item of [`Entries`].
type EntryResult = Result<(Vec<u8>, Vec<u8>), StorageError>;

impl Iterator for Entries {
    type Item = EntryResult;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.inner.next();
        self.remaining = self.remaining.saturating_sub(1);
        item
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

impl std::fmt::Debug for Entries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entries")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}
