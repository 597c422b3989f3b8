use super::causal::causal_newtype;
use super::{Causal, CausalContext, Dot, DotFun, DotMap, DotStore, Embeddable, ReplicaId};
use crate::clock::Timestamp;
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::hash::Hash;

/// A value and the hybrid-logical timestamp of the write that set it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lww<V> {
    /// When it was written.
    pub ts: Timestamp,
    /// The value.
    pub value: V,
}

/// An add-wins map whose values are last-writer-wins registers: DeltaCrdt's `AWLWWMap`.
///
/// * A key written concurrently with its removal survives (add wins): the remove only forgets
///   the writes it had seen.
/// * Concurrent writes to one key keep every value until the next write; reads pick the one
///   with the greatest `(timestamp, replica id)`, so every replica picks the same winner.
/// * Removing a key leaves nothing behind in the store: its dots stay in the causal context,
///   which folds into a version vector, so deleting everything returns memory to the empty
///   baseline.
///
/// Timestamps come from a [`Hlc`](crate::clock::Hlc) the caller owns; the map never reads a
/// clock.
///
/// # Examples
/// ```
/// use herd::clock::Timestamp;
/// use herd::crdt::{AwLwwMap, Crdt, ReplicaId};
///
/// let (a_id, b_id) = (ReplicaId::new(1), ReplicaId::new(2));
/// let mut a: AwLwwMap<&str, u32> = AwLwwMap::new();
/// a.put(a_id, Timestamp::new(1, 0), "x", 1);
/// let mut b = a.clone();
/// // Concurrently: a removes "x", b writes it again. The write wins.
/// let removed = a.remove(&"x");
/// let written = b.put(b_id, Timestamp::new(2, 0), "x", 2);
/// a.join(&written);
/// b.join(&removed);
/// assert_eq!(a, b);
/// assert_eq!(a.get(&"x"), Some(&2));
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize + Hash + Eq + Clone + std::fmt::Debug, V: Serialize + Clone + PartialEq + std::fmt::Debug",
    deserialize = "K: Deserialize<'de> + Hash + Eq + Clone + std::fmt::Debug, V: Deserialize<'de> + Clone + PartialEq + std::fmt::Debug"
))]
#[serde(transparent)]
pub struct AwLwwMap<K, V> {
    inner: Causal<DotMap<K, DotFun<Lww<V>>>>,
}

/// The order in which concurrent writes to one key win: timestamp, then replica id.
pub(crate) fn rank<V>(dot: Dot, entry: &Lww<V>) -> (Timestamp, ReplicaId, u64) {
    (entry.ts, dot.replica, dot.counter)
}

impl<K, V> Default for AwLwwMap<K, V> {
    fn default() -> Self {
        AwLwwMap {
            inner: Causal {
                store: DotMap::default(),
                ctx: CausalContext::new(),
                keyed: false,
            },
        }
    }
}

impl<K, V> AwLwwMap<K, V>
where
    K: Hash + Eq + Clone + std::fmt::Debug,
    V: Clone + PartialEq + std::fmt::Debug,
{
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`, written by `replica` at `ts`, and returns the delta.
    ///
    /// The delta holds the key, the value and the dots it overwrote: a few dozen bytes.
    pub fn put(&mut self, replica: ReplicaId, ts: Timestamp, key: K, value: V) -> Self {
        let dot = self.inner.ctx.next_dot(replica);
        let mut delta_ctx = CausalContext::new();
        let entry = Lww { ts, value };
        let delta_entry = entry.clone();
        let entries = &mut self.inner.store.entries;
        let delta_key = match entries.get_full_mut(&key) {
            Some((_, k, slot)) => {
                slot.for_each_dot(&mut |d| delta_ctx.insert(d));
                *slot = DotFun::single(dot, entry);
                k.clone()
            }
            None => {
                let delta_key = key.clone();
                entries.insert(key, DotFun::single(dot, entry));
                delta_key
            }
        };
        self.inner.ctx.insert(dot);
        delta_ctx.insert(dot);
        Self::from_causal(Causal::keyed(
            DotMap::single(delta_key, DotFun::single(dot, delta_entry)),
            delta_ctx,
        ))
    }

    /// Removes `key` and returns the delta (the key and the dots it removed). Removing a key
    /// that is absent returns an empty delta.
    pub fn remove<Q>(&mut self, key: &Q) -> Self
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some((key, store)) = self.inner.store.entries.swap_remove_entry(key) else {
            return Self::from_causal(Causal::empty_delta());
        };
        let mut delta_ctx = CausalContext::new();
        store.for_each_dot(&mut |d| delta_ctx.insert(d));
        if self.inner.keyed {
            // A keyed map (a delta group) keeps the key so the removed dots stay attributed.
            self.inner
                .store
                .entries
                .insert(key.clone(), DotFun::default());
        }
        Self::from_causal(Causal::keyed(
            DotMap::single(key, DotFun::default()),
            delta_ctx,
        ))
    }

    /// The winning value of `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_entry(key).map(|(_, e)| &e.value)
    }

    /// The winning entry of `key`, with its dot and timestamp.
    pub fn get_entry<Q>(&self, key: &Q) -> Option<(Dot, &Lww<V>)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.store.entries.get(key)?.max_by_key(rank)
    }

    /// Every entry of `key`: more than one after concurrent writes, until the next write.
    pub fn conflicts<Q>(&self, key: &Q) -> impl Iterator<Item = (Dot, &Lww<V>)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner
            .store
            .entries
            .get(key)
            .into_iter()
            .flat_map(|f| f.iter())
    }

    /// True when `key` is present.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_entry(key).is_some()
    }

    /// Keys and their winning values, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.inner
            .store
            .entries
            .iter()
            .filter_map(|(k, f)| f.max_by_key(rank).map(|(_, e)| (k, &e.value)))
    }

    /// How many keys are present.
    pub fn len(&self) -> usize {
        if self.inner.keyed {
            self.iter().count()
        } else {
            self.inner.store.entries.len()
        }
    }

    /// True when no key is present.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The causal context: every write this map reflects.
    pub fn context(&self) -> &CausalContext {
        self.inner.context()
    }

    /// The greatest timestamp stored, to resume a [`Hlc`](crate::clock::Hlc) after a restart.
    pub fn max_timestamp(&self) -> Option<Timestamp> {
        let mut max = None;
        for store in self.inner.store.entries.values() {
            for (_, e) in store.iter() {
                max = max.max(Some(e.ts));
            }
        }
        max
    }
}

causal_newtype!(AwLwwMap [K, V] [K, V] store = DotMap<K, DotFun<Lww<V>>>;
    where K: Hash + Eq + Clone + std::fmt::Debug, V: Clone + PartialEq + std::fmt::Debug);
