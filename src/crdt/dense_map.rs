//! A hash map whose entries live in one dense vector, indexed by a table of `u32` positions.
//!
//! Why not `indexmap`, which has the same layout? Two costs that matter at a million keys:
//! it grows its entry vector up to the hash table's capacity (1.84M slots for 1M keys, so
//! ~75% slack on 72-byte entries), and its index is a `usize` plus a stored 8-byte hash per
//! entry. Here the vector grows by plain doubling and the index holds 4-byte positions,
//! which is what keeps [`AwLwwMap`](super::AwLwwMap) under its 48-byte overhead budget
//! (measured in `benches/crdt.rs`). Capacity: `u32::MAX - 1` keys.

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;

#[derive(Clone)]
pub(crate) struct DenseMap<K, V> {
    entries: Vec<(K, V)>,
    index: HashTable<u32>,
    hasher: RandomState,
}

impl<K, V> Default for DenseMap<K, V> {
    fn default() -> Self {
        DenseMap {
            entries: Vec::new(),
            index: HashTable::new(),
            hasher: RandomState::default(),
        }
    }
}

impl<K: std::fmt::Debug, V: std::fmt::Debug> std::fmt::Debug for DenseMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl<K: Hash + Eq, V> DenseMap<K, V> {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn position<Q>(&self, key: &Q) -> Option<usize>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        let entries = &self.entries;
        self.index
            .find(hash, |&i| entries[i as usize].0.borrow() == key)
            .map(|&i| i as usize)
    }

    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.position(key).map(|i| &self.entries[i].1)
    }

    pub(crate) fn get_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.position(key)
            .map(|i| (&self.entries[i].0, &self.entries[i].1))
    }

    /// The entry of `key` with its position, for an update that may then remove it.
    pub(crate) fn get_full_mut<Q>(&mut self, key: &Q) -> Option<(usize, &K, &mut V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let i = self.position(key)?;
        let (k, v) = &mut self.entries[i];
        Some((i, k, v))
    }

    pub(crate) fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.position(key).is_some()
    }

    /// Inserts or replaces; returns the position of the entry and the replaced value.
    ///
    /// # Panics
    /// When the map already holds `u32::MAX - 1` keys.
    pub(crate) fn insert_full(&mut self, key: K, value: V) -> (usize, Option<V>) {
        if let Some(i) = self.position(&key) {
            return (i, Some(std::mem::replace(&mut self.entries[i].1, value)));
        }
        let i = self.entries.len();
        let pos = u32::try_from(i)
            .ok()
            .filter(|&p| p < u32::MAX)
            .expect("a DotMap holds at most u32::MAX - 1 keys");
        let hash = self.hasher.hash_one(&key);
        self.entries.push((key, value));
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index
            .insert_unique(hash, pos, |&j| hasher.hash_one(&entries[j as usize].0));
        (i, None)
    }

    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.insert_full(key, value).1
    }

    /// Removes the entry at position `i`, moving the last entry into its place.
    pub(crate) fn swap_remove_index(&mut self, i: usize) -> Option<(K, V)> {
        if i >= self.entries.len() {
            return None;
        }
        let hash = self.hasher.hash_one(&self.entries[i].0);
        if let Ok(bucket) = self.index.find_entry(hash, |&j| j as usize == i) {
            bucket.remove();
        }
        let last = self.entries.len() - 1;
        if i != last {
            let moved = self.hasher.hash_one(&self.entries[last].0);
            if let Some(slot) = self.index.find_mut(moved, |&j| j as usize == last) {
                *slot = i as u32;
            }
        }
        let removed = self.entries.swap_remove(i);
        self.shrink_if_sparse();
        Some(removed)
    }

    /// Gives memory back once at most a quarter of the capacity is used, keeping room for
    /// twice the entries left: a map that held a million keys and lost them returns to near
    /// its empty size (removes leave no tombstones, so nothing else holds on to it), and the
    /// quarter/double gap keeps the cost amortised O(1) per remove.
    fn shrink_if_sparse(&mut self) {
        const MIN_CAPACITY: usize = 64;
        let len = self.entries.len();
        if self.entries.capacity() > MIN_CAPACITY && len <= self.entries.capacity() / 4 {
            self.entries.shrink_to((len * 2).max(MIN_CAPACITY / 4));
            let (entries, hasher) = (&self.entries, &self.hasher);
            self.index
                .shrink_to(len * 2, |&j| hasher.hash_one(&entries[j as usize].0));
        }
    }

    pub(crate) fn swap_remove_entry<Q>(&mut self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let i = self.position(key)?;
        self.swap_remove_index(i)
    }

    /// Keeps the entries for which `keep` is true. O(n): rebuilds the index.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let before = self.entries.len();
        self.entries.retain_mut(|(k, v)| keep(k, v));
        if self.entries.len() != before {
            self.index.clear();
            let (entries, hasher) = (&self.entries, &self.hasher);
            for (i, (k, _)) in entries.iter().enumerate() {
                let hash = hasher.hash_one(k);
                self.index
                    .insert_unique(hash, i as u32, |&j| hasher.hash_one(&entries[j as usize].0));
            }
            self.shrink_if_sparse();
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }
}

impl<K: Hash + Eq, V> FromIterator<(K, V)> for DenseMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = DenseMap::default();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

impl<K: Serialize, V: Serialize> Serialize for DenseMap<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.entries.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de, K, V> Deserialize<'de> for DenseMap<K, V>
where
    K: Deserialize<'de> + Hash + Eq,
    V: Deserialize<'de>,
{
    /// A repeated key keeps its last value, like every serde map.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor<K, V>(PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de> + Hash + Eq, V: Deserialize<'de>> Visitor<'de> for MapVisitor<K, V> {
            type Value = DenseMap<K, V>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                // No preallocation from the peer's length prefix: it is not trusted.
                let mut map = DenseMap::default();
                while let Some((k, v)) = access.next_entry()? {
                    map.insert(k, v);
                }
                Ok(map)
            }
        }
        d.deserialize_map(MapVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// Behaves like a HashMap through inserts, swap-removes and retains.
        #[test]
        fn matches_hash_map(ops in proptest::collection::vec((0u8..3, 0u16..400, any::<u8>()), 0..1200)) {
            let mut dense = DenseMap::default();
            let mut model = HashMap::new();
            for (op, k, v) in ops {
                match op {
                    0 => prop_assert_eq!(dense.insert(k, v), model.insert(k, v)),
                    1 => prop_assert_eq!(dense.swap_remove_entry(&k), model.remove_entry(&k)),
                    _ => {
                        dense.retain(|key, _| key % 7 != u16::from(v % 7));
                        model.retain(|key, _| key % 7 != u16::from(v % 7));
                    }
                }
                prop_assert_eq!(dense.len(), model.len());
                for (k, v) in &model {
                    prop_assert_eq!(dense.get(k), Some(v));
                }
            }
        }
    }

    #[test]
    fn gives_memory_back_after_removes() {
        let mut dense = DenseMap::default();
        for k in 0..10_000u32 {
            dense.insert(k, [0u8; 64]);
        }
        for k in 0..9_990u32 {
            dense.swap_remove_entry(&k);
        }
        assert!(
            dense.entries.capacity() <= 64,
            "{}",
            dense.entries.capacity()
        );
        assert!(dense.index.capacity() <= 128, "{}", dense.index.capacity());
        for k in 9_990..10_000u32 {
            assert_eq!(dense.get(&k), Some(&[0u8; 64]));
        }
    }
}
