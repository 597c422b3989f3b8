//! Between a replica's memory and its [`Storage`]: loading at start, and the group commit
//! that writes changed keys behind (or ahead of) the writers.
//!
//! Stored form: key bytes and entry bytes are the [`codec`] encodings of a key and of its dot
//! store; the context is the codec encoding of the causal context. Each commit writes the
//! entries of the keys changed since the previous one (deleting keys now absent) and the whole
//! context, in one atomic batch, taken under the replica's lock so entries and context agree.

use super::ReplicaError;
use crate::codec;
use crate::crdt::{Causal, CausalContext, DotMap, DotStore};
use crate::storage::{Storage, WriteBatch};
use crate::sync::MapCrdt;

/// Stored keys, entries and contexts are decoded without a size limit: they were written by
/// this replica, and the store's own checksums guard them. The codec still rejects garbage.
const NO_LIMIT: usize = usize::MAX;

/// A loaded replica: its id and its state.
pub(crate) struct Loaded<C> {
    pub(crate) replica_id: u64,
    pub(crate) crdt: C,
}

/// Loads the stored replica, or `None` if the store is empty.
pub(crate) fn load<C: MapCrdt>(storage: &dyn Storage) -> Result<Option<Loaded<C>>, ReplicaError> {
    let Some(snapshot) = storage.load()? else {
        return Ok(None);
    };
    let ctx: CausalContext = if snapshot.context.is_empty() {
        CausalContext::new()
    } else {
        codec::decode(&snapshot.context, NO_LIMIT)?
    };
    let mut store: DotMap<C::Key, C::Value> = DotMap::default();
    for item in snapshot.entries {
        let (key, entry) = item?;
        let key: C::Key = codec::decode(&key, NO_LIMIT)?;
        let value: C::Value = codec::decode(&entry, NO_LIMIT)?;
        if !value.is_empty() {
            store.entries.insert(key, value);
        }
    }
    let causal = Causal::from_state(store, ctx)?;
    Ok(Some(Loaded {
        replica_id: snapshot.replica_id,
        crdt: C::from_causal(causal),
    }))
}

/// The batch that makes the stored state equal to `crdt` for `keys`, plus its whole context.
pub(crate) fn batch_for<C: MapCrdt>(crdt: &C, keys: &[C::Key]) -> Result<WriteBatch, ReplicaError> {
    let causal = crdt.as_causal();
    let mut batch = WriteBatch::new();
    for key in keys {
        let key_bytes = codec::encode(key, NO_LIMIT)?;
        match causal.store().get(key).filter(|s| !s.is_empty()) {
            Some(store) => batch.put(key_bytes, codec::encode(store, NO_LIMIT)?),
            None => batch.delete(key_bytes),
        };
    }
    batch.set_context(codec::encode(causal.context(), NO_LIMIT)?);
    Ok(batch)
}
