//! Typed methods of the other replicable types: sets, maps of counters, maps of multi-value
//! registers, and nested documents. Each write copies (for subscribers) only the key it
//! changes, so its diffs are exact and cheap.

use super::shared::wall_ms;
use super::views::{ReplicaKey, ReplicaValue};
use super::{Replica, ReplicaError};
use crate::clock::Timestamp;
use crate::crdt::{Counter, Document, MvRegister, OrMap, OrSet, Path, ReplicaId};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

impl<C: super::MapView> Replica<C> {
    /// Applies a mutator that changes only `key`: copies (for subscribers) just that key's
    /// store before it.
    async fn write_key(
        &self,
        key: &C::Key,
        op: impl FnOnce(&mut C, ReplicaId, Timestamp) -> C,
    ) -> Result<(), ReplicaError> {
        self.ensure_running()?;
        let seq = {
            let mut core = self.shared.lock();
            let ts = core.hlc.now(wall_ms());
            let before = core.before([key]);
            let delta = core.sync.mutate(|c, id| op(c, id, ts));
            self.shared.after_local(&mut core, &delta, before)
        };
        self.finish(seq).await
    }

    /// The store under `key`, read under the lock.
    fn read_key<Q, R>(&self, key: &Q, f: impl FnOnce(Option<&C::Value>) -> R) -> R
    where
        C::Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let core = self.shared.lock();
        f(core.sync.crdt().as_causal().store().get(key))
    }

    /// The owned key equal to `key`, if present.
    fn find_key<Q>(&self, key: &Q) -> Option<C::Key>
    where
        C::Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let core = self.shared.lock();
        let store = core.sync.crdt().as_causal().store();
        store.entries.get_key_value(key).map(|(k, _)| k.clone())
    }
}

/// # Sets
/// An add-wins set ([`OrSet`]): an add concurrent with a remove of the same element wins.
///
/// ```
/// use herd::replica::{ReplicaOptions, SetReplica};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), herd::replica::ReplicaError> {
/// let online: SetReplica<String> = SetReplica::start_local(ReplicaOptions::new("online")).await?;
/// online.add("alice").await?;
/// online.add("bob").await?;
/// online.remove("alice").await?;
/// assert!(online.contains("bob") && !online.contains("alice"));
/// assert_eq!(online.to_vec(), vec!["bob".to_string()]);
/// # Ok(())
/// # }
/// ```
impl<T: ReplicaKey> Replica<OrSet<T>> {
    /// Adds `element`.
    ///
    /// # Errors
    /// As [`Kv::put`](super::Kv::put).
    ///
    /// # Cancel safety
    /// The add is applied before the first await.
    pub async fn add(&self, element: impl Into<T>) -> Result<(), ReplicaError> {
        let element = element.into();
        self.check_fits(&element)?;
        let e = element.clone();
        self.write_key(&e, |s, id, _| s.add(id, element)).await
    }

    /// Removes `element` (the adds of it seen here). Removing an absent element changes
    /// nothing.
    ///
    /// # Errors
    /// As [`Kv::delete`](super::Kv::delete).
    ///
    /// # Cancel safety
    /// The removal is applied before the first await.
    pub async fn remove<Q>(&self, element: &Q) -> Result<(), ReplicaError>
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(key) = self.find_key(element) else {
            return Ok(());
        };
        self.write_key(&key.clone(), move |s, _, _| s.remove::<T>(&key))
            .await
    }

    /// True when `element` is in the set.
    pub fn contains<Q>(&self, element: &Q) -> bool
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.read(|s| s.contains(element))
    }

    /// The elements, in no particular order.
    pub fn to_vec(&self) -> Vec<T> {
        self.read(|s| s.iter().cloned().collect())
    }

    /// How many elements.
    pub fn len(&self) -> usize {
        self.read(|s| s.len())
    }

    /// True when the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// # Maps of counters
/// Each key is a [`Counter`]: increments and decrements from every replica add up;
/// [`reset`](Self::reset) removes the key (what it had seen of it). For a single counter,
/// use one key (`()` works).
///
/// ```
/// use herd::replica::{CounterMap, ReplicaOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), herd::replica::ReplicaError> {
/// let hits: CounterMap<String> = CounterMap::start_local(ReplicaOptions::new("hits")).await?;
/// hits.increment("/index", 3).await?;
/// hits.decrement("/index", 1).await?;
/// assert_eq!(hits.value("/index"), 2);
/// assert_eq!(hits.value("/never"), 0);
/// # Ok(())
/// # }
/// ```
impl<K: ReplicaKey> Replica<OrMap<K, Counter>> {
    /// Adds `by` to the counter under `key`.
    ///
    /// # Errors
    /// As [`Kv::put`](super::Kv::put).
    ///
    /// # Cancel safety
    /// The change is applied before the first await.
    pub async fn increment(&self, key: impl Into<K>, by: u64) -> Result<(), ReplicaError> {
        let key = key.into();
        self.check_fits(&(&key, by))?;
        let k = key.clone();
        self.write_key(&k, move |m, id, _| m.update(key, |c| c.increment(id, by)))
            .await
    }

    /// Subtracts `by` from the counter under `key`.
    ///
    /// # Errors
    /// As [`Kv::put`](super::Kv::put).
    ///
    /// # Cancel safety
    /// The change is applied before the first await.
    pub async fn decrement(&self, key: impl Into<K>, by: u64) -> Result<(), ReplicaError> {
        let key = key.into();
        self.check_fits(&(&key, by))?;
        let k = key.clone();
        self.write_key(&k, move |m, id, _| m.update(key, |c| c.decrement(id, by)))
            .await
    }

    /// Removes the counter under `key`: what this replica had seen of it. Changes made
    /// concurrently elsewhere survive (see [`Counter`]).
    ///
    /// # Errors
    /// As [`Kv::delete`](super::Kv::delete).
    ///
    /// # Cancel safety
    /// The removal is applied before the first await.
    pub async fn reset<Q>(&self, key: &Q) -> Result<(), ReplicaError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(key) = self.find_key(key) else {
            return Ok(());
        };
        self.write_key(&key.clone(), move |m, _, _| m.remove::<K>(&key))
            .await
    }

    /// The value of the counter under `key` (0 when absent).
    pub fn value<Q>(&self, key: &Q) -> i64
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.read_key(key, |s| s.map_or(0, crate::crdt::counter_sum))
    }

    /// Every counter and its value.
    pub fn to_map(&self) -> HashMap<K, i64> {
        self.read(|m| {
            m.keys()
                .filter_map(|k| m.get(k).map(|c| (k.clone(), c.value())))
                .collect()
        })
    }
}

/// # Maps of multi-value registers
/// Each key is an [`MvRegister`]: a write replaces the values it has seen, and concurrent
/// writes all survive until a later write has seen them: [`values`](Self::values) shows the
/// conflict instead of picking a winner.
///
/// ```
/// use herd::replica::{MvMap, ReplicaOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), herd::replica::ReplicaError> {
/// let owners: MvMap<String, String> = MvMap::start_local(ReplicaOptions::new("owners")).await?;
/// owners.write("lock-1", "node-a").await?;
/// owners.write("lock-1", "node-b").await?; // has seen node-a: replaces it
/// assert_eq!(owners.values("lock-1"), vec!["node-b".to_string()]);
/// # Ok(())
/// # }
/// ```
impl<K: ReplicaKey, V: ReplicaValue> Replica<OrMap<K, MvRegister<V>>> {
    /// Writes `value` under `key`, replacing the values seen there.
    ///
    /// # Errors
    /// As [`Kv::put`](super::Kv::put).
    ///
    /// # Cancel safety
    /// The write is applied before the first await.
    pub async fn write(&self, key: impl Into<K>, value: impl Into<V>) -> Result<(), ReplicaError> {
        let (key, value) = (key.into(), value.into());
        self.check_fits(&(&key, &value))?;
        let k = key.clone();
        self.write_key(&k, move |m, id, _| m.update(key, |r| r.write(id, value)))
            .await
    }

    /// Removes `key` (the values seen under it).
    ///
    /// # Errors
    /// As [`Kv::delete`](super::Kv::delete).
    ///
    /// # Cancel safety
    /// The removal is applied before the first await.
    pub async fn remove<Q>(&self, key: &Q) -> Result<(), ReplicaError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(key) = self.find_key(key) else {
            return Ok(());
        };
        self.write_key(&key.clone(), move |m, _, _| m.remove::<K>(&key))
            .await
    }

    /// Every value under `key`: one, or several after concurrent writes (ordered by the
    /// write that made them); empty when absent.
    pub fn values<Q>(&self, key: &Q) -> Vec<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.read_key(key, |s| {
            s.map(|s| s.iter().map(|(_, v)| v.clone()).collect())
                .unwrap_or_default()
        })
    }
}

/// # Nested documents
/// A [`Document`]: one last-writer-wins register per leaf, so concurrent writes of different
/// fields all survive and a change ships only the field it touched. Diffs name the leaf's
/// [`Path`].
///
/// ```
/// use herd::crdt::Path;
/// use herd::replica::{DocReplica, Diff, ReplicaOptions, Update};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), herd::replica::ReplicaError> {
/// let config: DocReplica<String> = DocReplica::start_local(ReplicaOptions::new("config")).await?;
/// let mut updates = config.subscribe();
/// config.set("server.host", "example.org").await?;
/// assert_eq!(config.get("server.host").as_deref(), Some("example.org"));
/// assert_eq!(
///     updates.recv().await,
///     Some(Update::Diffs(vec![Diff::Added {
///         key: Path::from("server.host"),
///         value: "example.org".to_string(),
///     }]))
/// );
/// # Ok(())
/// # }
/// ```
impl<V: ReplicaValue> Replica<Document<V>> {
    /// Sets the leaf at `path` (`"a.b"`, or a [`Path`]) to `value`; it replaces what was seen
    /// at that path and at its ancestors. An empty path changes nothing.
    ///
    /// # Errors
    /// As [`Kv::put`](super::Kv::put).
    ///
    /// # Cancel safety
    /// The write is applied before the first await.
    pub async fn set(
        &self,
        path: impl Into<Path>,
        value: impl Into<V>,
    ) -> Result<(), ReplicaError> {
        let (path, value) = (path.into(), value.into());
        let Some(first) = path.segments().first().cloned() else {
            return Ok(());
        };
        self.check_fits(&(&path, &value))?;
        self.write_key(&first, move |d, id, ts| d.set(id, ts, &path, value))
            .await
    }

    /// Removes what was seen at and under `path`. A write concurrent with the removal
    /// survives it (add wins).
    ///
    /// # Errors
    /// As [`Kv::delete`](super::Kv::delete).
    ///
    /// # Cancel safety
    /// The removal is applied before the first await.
    pub async fn remove(&self, path: impl Into<Path>) -> Result<(), ReplicaError> {
        let path = path.into();
        match path.segments().first().cloned() {
            Some(first) => self.write_key(&first, move |d, _, _| d.remove(&path)).await,
            None => self.mutate(|d, _, _| d.remove(&Path::new())).await,
        }
    }

    /// The value of the leaf at `path`.
    pub fn get(&self, path: impl Into<Path>) -> Option<V> {
        let path = path.into();
        self.read(|d| d.get(&path).cloned())
    }

    /// Every leaf and its value.
    pub fn leaves(&self) -> HashMap<Path, V> {
        self.read(|d| {
            d.leaves()
                .into_iter()
                .map(|(p, v)| (p, v.clone()))
                .collect()
        })
    }
}
