//! What subscribers see: the visible items of each key, and diffs between two states of a key.

use crate::clock::Timestamp;
use crate::sync::MapCrdt;
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;

/// A map CRDT whose per-key dot stores have visible items: what subscribers are told about and
/// what a snapshot holds.
///
/// For flat maps an item is a key and its value; for a [`Document`](crate::crdt::Document) an
/// item is a leaf: its [`Path`](crate::crdt::Path) and value, so a diff names the field that
/// changed rather than the whole top-level field.
pub trait MapView:
    MapCrdt<Key: Send + Sync + 'static, Value: Send + Sync + 'static> + Default + Send + Sync + 'static
{
    /// What a diff names: a key, or a path inside one.
    type Item: Clone + Eq + Hash + Debug + Send + Sync + 'static;
    /// The visible value of an item.
    type View: Clone + PartialEq + Debug + Send + Sync + 'static;

    /// Calls `f` with every visible item of `key`'s store.
    fn visit(key: &Self::Key, store: &Self::Value, f: &mut dyn FnMut(Self::Item, Self::View));

    /// Appends to `out` the diffs of `key` from store `before` to store `after` (`None`:
    /// absent). The default compares the visible items of both.
    fn diff(
        key: &Self::Key,
        before: Option<&Self::Value>,
        after: Option<&Self::Value>,
        out: &mut Vec<Diff<Self::Item, Self::View>>,
    ) {
        let items = |store: Option<&Self::Value>| {
            let mut items = Vec::new();
            if let Some(s) = store {
                Self::visit(key, s, &mut |i, v| items.push((i, v)));
            }
            items
        };
        let (mut before, mut after) = (items(before), items(after));
        match (before.len(), after.len()) {
            // The common case (at most one item per key): no map needed.
            (b, a) if b <= 1 && a <= 1 => match (before.pop(), after.pop()) {
                (Some((old, _)), Some((key, value))) if old != key => {
                    out.push(Diff::Removed { key: old });
                    out.push(Diff::Added { key, value });
                }
                (Some((key, was)), now) => {
                    out.extend(Diff::between(key, Some(was), now.map(|(_, v)| v)));
                }
                (None, Some((key, value))) => out.push(Diff::Added { key, value }),
                (None, None) => {}
            },
            _ => {
                let mut old: HashMap<Self::Item, Self::View> = before.into_iter().collect();
                for (item, value) in after {
                    let was = old.remove(&item);
                    out.extend(Diff::between(item, was, Some(value)));
                }
                out.extend(old.into_keys().map(|key| Diff::Removed { key }));
            }
        }
    }

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

/// One change to an item, as a subscriber sees it. Only changes of the visible value are
/// reported: a write that leaves it as it was (a concurrent loser arriving, the same value
/// written again) produces no diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diff<I, V> {
    /// The item was absent and now holds `value`.
    Added {
        /// The key (or path).
        key: I,
        /// Its value now.
        value: V,
    },
    /// The item's value changed to `value`.
    Updated {
        /// The key (or path).
        key: I,
        /// Its value now.
        value: V,
    },
    /// The item was removed.
    Removed {
        /// The key (or path).
        key: I,
    },
}

impl<I, V> Diff<I, V> {
    /// The key (or path) the diff is about.
    pub fn key(&self) -> &I {
        match self {
            Diff::Added { key, .. } | Diff::Updated { key, .. } | Diff::Removed { key } => key,
        }
    }

    /// The value after the change; `None` for a removal.
    pub fn value(&self) -> Option<&V> {
        match self {
            Diff::Added { value, .. } | Diff::Updated { value, .. } => Some(value),
            Diff::Removed { .. } => None,
        }
    }

    /// Applies the diff to a copy of the visible state (a [`Snapshot`](super::Snapshot)).
    pub fn apply_to(self, state: &mut HashMap<I, V>)
    where
        I: Hash + Eq,
    {
        match self {
            Diff::Added { key, value } | Diff::Updated { key, value } => {
                state.insert(key, value);
            }
            Diff::Removed { key } => {
                state.remove(&key);
            }
        }
    }

    /// The diff from `before` to `after` of one item, if the visible value changed.
    pub(crate) fn between(key: I, before: Option<V>, after: Option<V>) -> Option<Self>
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
