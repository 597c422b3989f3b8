//! Typed methods of a replicated [`AwLwwMap`]: `put`, `get`, `delete`.

use super::shared::{Core, wall_ms};
use super::views::{ReplicaKey, ReplicaValue};
use super::{Replica, ReplicaError};
use crate::clock::Timestamp;
use crate::crdt::{AwLwwMap, Embeddable};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

impl<K: ReplicaKey, V: ReplicaValue> Replica<AwLwwMap<K, V>> {
    /// Sets `key` to `value`. Concurrent writes to one key are resolved by last-writer-wins on
    /// hybrid-logical-clock timestamps, the same winner on every replica. Takes anything that
    /// converts into the key and value types (`&str` for `String`, for instance).
    ///
    /// # Errors
    /// [`ReplicaError::TooLarge`] (nothing applied) when the write could never fit a sync
    /// message; [`ReplicaError::Stopped`] (nothing applied); with
    /// [`Ack::Durable`](super::Ack::Durable) storage, a failed commit; a
    /// [`WriteConcern`](super::WriteConcern) not met in time.
    ///
    /// # Cancel safety
    /// The write is applied before the first await: cancelling only stops the wait for
    /// storage and neighbours.
    pub async fn put(&self, key: impl Into<K>, value: impl Into<V>) -> Result<(), ReplicaError> {
        let (key, value) = (key.into(), value.into());
        self.check_fits(&(&key, &value))?;
        self.ensure_running()?;
        let seq = {
            let mut core = self.shared.lock();
            let ts = core.hlc.now(wall_ms());
            self.put_locked(&mut core, ts, key, value)
        };
        self.finish(seq).await
    }

    /// One put under the lock; returns its change number.
    fn put_locked(&self, core: &mut Core<AwLwwMap<K, V>>, ts: Timestamp, key: K, value: V) -> u64 {
        if !core.has_subscribers() && self.shared.storage.is_none() {
            // Nobody needs the delta back: skip cloning it (the common in-memory case).
            core.sync.mutate_quiet(|c, id| c.put(id, ts, key, value));
            return self.shared.after_quiet_local(core);
        }
        let before = core.before([&key]);
        let delta = core.sync.mutate(|c, id| c.put(id, ts, key, value));
        self.shared.after_local(core, &delta, before)
    }

    /// Sets many keys at once: one lock, one commit to wait for, and (between two ticks) one
    /// delta group for the neighbours. The way to load data in bulk, or to pipeline writes
    /// with durable storage: a thousand keys cost about one fsync, not a thousand.
    ///
    /// # Errors
    /// As [`put`](Self::put). A write too large to sync is refused before any of the batch
    /// is applied.
    ///
    /// # Cancel safety
    /// As [`put`](Self::put).
    pub async fn put_many<KK: Into<K>, VV: Into<V>>(
        &self,
        entries: impl IntoIterator<Item = (KK, VV)>,
    ) -> Result<(), ReplicaError> {
        let entries: Vec<(K, V)> = entries
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        for (key, value) in &entries {
            self.check_fits(&(key, value))?;
        }
        self.ensure_running()?;
        let seq = {
            let mut core = self.shared.lock();
            let wall = wall_ms();
            let mut seq = core.seq();
            for (key, value) in entries {
                let ts = core.hlc.now(wall);
                seq = self.put_locked(&mut core, ts, key, value);
            }
            seq
        };
        self.finish(seq).await
    }

    /// Removes `key`. Removing an absent key changes nothing.
    ///
    /// # Errors
    /// [`ReplicaError::Stopped`] (nothing applied); with
    /// [`Ack::Durable`](super::Ack::Durable) storage, a failed commit; a
    /// [`WriteConcern`](super::WriteConcern) not met in time.
    ///
    /// # Cancel safety
    /// As [`put`](Self::put).
    pub async fn delete<Q>(&self, key: &Q) -> Result<(), ReplicaError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.ensure_running()?;
        let seq = {
            let mut core = self.shared.lock();
            let Some((k, _)) = core
                .sync
                .crdt()
                .as_causal()
                .store()
                .entries
                .get_key_value(key)
            else {
                return Ok(());
            };
            let k = k.clone();
            let before = core.before([&k]);
            let delta = core.sync.mutate(|c, _| c.remove::<K>(&k));
            self.shared.after_local(&mut core, &delta, before)
        };
        self.finish(seq).await
    }

    /// The value of `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shared.lock().sync.crdt().get(key).cloned()
    }

    /// A copy of the whole map.
    pub fn to_map(&self) -> HashMap<K, V> {
        let core = self.shared.lock();
        core.sync
            .crdt()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// How many keys are present.
    pub fn len(&self) -> usize {
        self.shared.lock().sync.crdt().len()
    }

    /// True when no key is present.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
