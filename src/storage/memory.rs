//! [`MemoryStorage`]: the store for tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{Entries, Snapshot, Storage, StorageError, WriteBatch};

/// A [`Storage`] in memory, for tests.
///
/// Clones are cheap and share the same data, so a test can drop a replica and start another
/// on a clone of its store: a restart that keeps the state. [`MemoryStorage::new`] is a node
/// that lost its data. Every [`apply`](Storage::apply) is "durable" at once: it survives
/// anything but dropping the last clone.
///
/// # Examples
///
/// ```
/// use herd::storage::{MemoryStorage, Storage};
///
/// let store = MemoryStorage::new();
/// store.init(7)?;
/// let after_restart = store.clone();
/// assert_eq!(after_restart.load()?.map(|s| s.replica_id), Some(7));
/// # Ok::<(), herd::storage::StorageError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    state: Arc<Mutex<Option<Stored>>>,
}

#[derive(Debug)]
struct Stored {
    replica_id: u64,
    context: Vec<u8>,
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl MemoryStorage {
    /// An empty store: [`load`](Storage::load) returns `None` until [`init`](Storage::init).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of stored entries (0 when empty), without loading them.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock()
            .as_ref()
            .map_or(0, |stored| stored.entries.len())
    }

    /// Whether the store holds no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Option<Stored>> {
        // Every change is made in full under the lock and none can panic half-way, so the
        // data behind a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Storage for MemoryStorage {
    /// Copies the entries out, so the snapshot does not hold the lock. Never fails.
    fn load(&self) -> Result<Option<Snapshot>, StorageError> {
        let guard = self.lock();
        Ok(guard.as_ref().map(|stored| {
            let entries: Vec<_> = stored
                .entries
                .iter()
                .map(|(key, entry)| Ok((key.clone(), entry.clone())))
                .collect();
            let len = entries.len();
            Snapshot {
                replica_id: stored.replica_id,
                context: stored.context.clone(),
                entries: Entries::new(entries.into_iter(), len),
            }
        }))
    }

    /// Never fails.
    fn init(&self, replica_id: u64) -> Result<(), StorageError> {
        *self.lock() = Some(Stored {
            replica_id,
            context: Vec::new(),
            entries: BTreeMap::new(),
        });
        Ok(())
    }

    fn apply(&self, batch: &WriteBatch) -> Result<(), StorageError> {
        let mut guard = self.lock();
        let stored = guard.as_mut().ok_or(StorageError::NotInitialized)?;
        for (key, entry) in batch.changes() {
            match entry {
                Some(entry) => {
                    stored.entries.insert(key.to_vec(), entry.to_vec());
                }
                None => {
                    stored.entries.remove(key);
                }
            }
        }
        if let Some(context) = batch.context() {
            stored.context = context.to_vec();
        }
        Ok(())
    }

    /// A no-op: every batch is already stored.
    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }
}
