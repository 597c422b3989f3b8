//! [`MapView`] for each replicable type, and [`Visible`] for the values an [`OrMap`] can hold.

use super::view::MapView;
use crate::clock::Timestamp;
use crate::crdt::{
    AwLwwMap, AwLwwRegister, Counter, Document, DotFun, DotMap, DotSet, Embeddable, EwFlag, Lww,
    MvRegister, Node, OrMap, OrSet, Path, Segment,
};
use crate::sync::MapCrdt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;

/// Bounds of a replica's keys.
pub trait ReplicaKey:
    Hash + Eq + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
}
impl<T: Hash + Eq + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static> ReplicaKey
    for T
{
}

/// Bounds of a replica's values.
pub trait ReplicaValue:
    Clone + PartialEq + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
}
impl<T: Clone + PartialEq + Debug + Serialize + DeserializeOwned + Send + Sync + 'static>
    ReplicaValue for T
{
}

/// A CRDT that can be a value of a replicated [`OrMap`]: what it shows to readers and
/// subscribers.
pub trait Visible: Embeddable<Store: Serialize + DeserializeOwned + Send + Sync + 'static> {
    /// The visible value.
    type View: Clone + PartialEq + Debug + Send + Sync + 'static;
    /// The visible value of a store; `None` when empty.
    fn visible(store: &Self::Store) -> Option<Self::View>;
    /// The greatest timestamp in a store, if the type has timestamps.
    fn timestamp(store: &Self::Store) -> Option<Timestamp> {
        let _ = store;
        None
    }
}

impl<V: ReplicaValue> Visible for MvRegister<V> {
    /// Every concurrent value, ordered by the write that made it.
    type View = Vec<V>;
    fn visible(store: &DotFun<V>) -> Option<Vec<V>> {
        (!store.is_empty()).then(|| store.iter().map(|(_, v)| v.clone()).collect())
    }
}

impl<V: ReplicaValue> Visible for AwLwwRegister<V> {
    type View = V;
    fn visible(store: &DotFun<Lww<V>>) -> Option<V> {
        store
            .max_by_key(crate::crdt::aw_lww_map::rank)
            .map(|(_, e)| e.value.clone())
    }
    fn timestamp(store: &DotFun<Lww<V>>) -> Option<Timestamp> {
        store.iter().map(|(_, e)| e.ts).max()
    }
}

impl Visible for Counter {
    type View = i64;
    fn visible(store: &DotFun<i64>) -> Option<i64> {
        (!store.is_empty()).then(|| crate::crdt::counter_sum(store))
    }
}

impl<T: ReplicaKey> Visible for OrSet<T> {
    /// The elements (a set, so that the order entries happen to be stored in never shows as
    /// a change).
    type View = HashSet<T>;
    fn visible(store: &DotMap<T, DotSet>) -> Option<HashSet<T>> {
        let elements: HashSet<T> = store.present_keys().cloned().collect();
        (!elements.is_empty()).then_some(elements)
    }
}

impl Visible for EwFlag {
    /// Present only while enabled.
    type View = ();
    fn visible(store: &DotSet) -> Option<()> {
        (!store.is_empty()).then_some(())
    }
}

impl<K: ReplicaKey, V: ReplicaValue> MapView for AwLwwMap<K, V> {
    type Item = K;
    type View = V;
    fn visit(key: &K, store: &DotFun<Lww<V>>, f: &mut dyn FnMut(K, V)) {
        if let Some(v) = AwLwwRegister::<V>::visible(store) {
            f(key.clone(), v);
        }
    }
    fn max_timestamp(&self) -> Option<Timestamp> {
        AwLwwMap::max_timestamp(self)
    }
    fn store_timestamp(store: &DotFun<Lww<V>>) -> Option<Timestamp> {
        AwLwwRegister::<V>::timestamp(store)
    }
}

impl<T: ReplicaKey> MapView for OrSet<T> {
    type Item = T;
    type View = ();
    fn visit(key: &T, store: &DotSet, f: &mut dyn FnMut(T, ())) {
        if !store.is_empty() {
            f(key.clone(), ());
        }
    }
}

impl<K: ReplicaKey, C: Visible + Serialize + DeserializeOwned + Send + Sync + 'static> MapView
    for OrMap<K, C>
{
    type Item = K;
    type View = C::View;
    fn visit(key: &K, store: &C::Store, f: &mut dyn FnMut(K, C::View)) {
        if let Some(v) = C::visible(store) {
            f(key.clone(), v);
        }
    }
    fn max_timestamp(&self) -> Option<Timestamp> {
        self.as_causal()
            .store()
            .iter()
            .filter_map(|(_, s)| C::timestamp(s))
            .max()
    }
    fn store_timestamp(store: &C::Store) -> Option<Timestamp> {
        C::timestamp(store)
    }
}

impl<V: ReplicaValue> MapCrdt for Document<V> {
    type Key = Segment;
    type Value = Node<V>;
}

impl<V: ReplicaValue> MapView for Document<V> {
    /// A leaf's path: diffs name the field that changed.
    type Item = Path;
    type View = V;
    fn visit(key: &Segment, store: &Node<V>, f: &mut dyn FnMut(Path, V)) {
        let mut at = vec![key.clone()];
        store.for_each_leaf(&mut at, &mut |p, v| f(Path::from(p.to_vec()), v.clone()));
    }
    fn max_timestamp(&self) -> Option<Timestamp> {
        Document::max_timestamp(self)
    }
    fn store_timestamp(store: &Node<V>) -> Option<Timestamp> {
        store.max_timestamp()
    }
}
