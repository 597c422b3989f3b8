//! What subscribers see: the visible value under each key, and diffs between two of them.

use crate::clock::Timestamp;
use crate::crdt::{AwLwwMap, DotFun, DotSet, Lww, OrSet};
use crate::sync::MapCrdt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::hash::Hash;

/// A map CRDT whose per-key dot store has a visible value: what `get` returns and what
/// subscribers are told about.
pub trait MapView:
    MapCrdt<Key: Send + Sync + 'static, Value: Send + Sync + 'static> + Default + Send + Sync + 'static
{
    /// The visible value under a key.
    type View: Clone + PartialEq + Debug + Send + Sync + 'static;
    /// The visible value of a key's store; `None` when the key is absent.
    fn view(store: &Self::Value) -> Option<Self::View>;
    /// The greatest hybrid-logical-clock timestamp stored, so a restarted replica's clock
    /// never goes back. `None` for types without timestamps.
    fn max_timestamp(&self) -> Option<Timestamp> {
        None
    }
    /// The greatest timestamp in one key's store, so the replica's clock can observe
    /// timestamps that arrive from neighbours. `None` for types without timestamps.
    fn store_timestamp(store: &Self::Value) -> Option<Timestamp> {
        let _ = store;
        None
    }
}

impl<K, V> MapView for AwLwwMap<K, V>
where
    K: Hash + Eq + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static,
    V: Clone + PartialEq + Debug + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type View = V;
    fn view(store: &DotFun<Lww<V>>) -> Option<V> {
        store
            .max_by_key(crate::crdt::aw_lww_map::rank)
            .map(|(_, e)| e.value.clone())
    }
    fn max_timestamp(&self) -> Option<Timestamp> {
        AwLwwMap::max_timestamp(self)
    }
    fn store_timestamp(store: &DotFun<Lww<V>>) -> Option<Timestamp> {
        store.iter().map(|(_, e)| e.ts).max()
    }
}

impl<T> MapView for OrSet<T>
where
    T: Hash + Eq + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type View = ();
    fn view(store: &DotSet) -> Option<()> {
        (!store.is_empty()).then_some(())
    }
}

/// One change to a key, as a subscriber sees it. Only changes of the visible value are
/// reported: a write that leaves it as it was (a concurrent loser arriving, the same value
/// written again through `put`) produces no diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diff<K, V> {
    /// The key was absent and now holds `value`.
    Added {
        /// The key.
        key: K,
        /// Its value now.
        value: V,
    },
    /// The key's value changed to `value`.
    Updated {
        /// The key.
        key: K,
        /// Its value now.
        value: V,
    },
    /// The key was removed.
    Removed {
        /// The key.
        key: K,
    },
}

impl<K, V> Diff<K, V> {
    /// The key the diff is about.
    pub fn key(&self) -> &K {
        match self {
            Diff::Added { key, .. } | Diff::Updated { key, .. } | Diff::Removed { key } => key,
        }
    }

    /// The diff from `before` to `after` of one key, if the visible value changed.
    pub(crate) fn between(key: K, before: Option<V>, after: Option<V>) -> Option<Self>
    where
        V: PartialEq,
    {
        match (before, after) {
            (None, Some(value)) => Some(Diff::Added { key, value }),
            (Some(old), Some(value)) if old != value => Some(Diff::Updated { key, value }),
            (Some(_), None) => Some(Diff::Removed { key }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn between_reports_only_visible_changes() {
        assert_eq!(
            Diff::between("k", None, Some(1)),
            Some(Diff::Added { key: "k", value: 1 })
        );
        assert_eq!(
            Diff::between("k", Some(1), Some(2)),
            Some(Diff::Updated { key: "k", value: 2 })
        );
        assert_eq!(Diff::between("k", Some(1), Some(1)), None);
        assert_eq!(
            Diff::between("k", Some(1), None::<i32>),
            Some(Diff::Removed { key: "k" })
        );
        assert_eq!(Diff::between("k", None::<i32>, None), None);
    }
}
