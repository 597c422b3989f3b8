use super::causal::causal_newtype;
use super::{Causal, CausalContext, Crdt, DotMap, DotSet, ReplicaId};
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::hash::Hash;

/// An add-wins observed-remove set: a remove only removes the adds it has seen, so an add
/// concurrent with a remove survives. No tombstones are kept per element.
///
/// # Examples
/// ```
/// use herd::crdt::{Crdt, OrSet, ReplicaId};
/// let mut a = OrSet::new();
/// a.add(ReplicaId::new(1), "alice");
/// let mut b = a.clone();
/// let gone = a.remove(&"alice");
/// let again = b.add(ReplicaId::new(2), "alice");
/// a.join(&again);
/// b.join(&gone);
/// assert!(a.contains(&"alice") && b.contains(&"alice"));
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound(
    serialize = "T: Serialize + Hash + Eq + Clone + std::fmt::Debug",
    deserialize = "T: Deserialize<'de> + Hash + Eq + Clone + std::fmt::Debug"
))]
#[serde(transparent)]
pub struct OrSet<T> {
    inner: Causal<DotMap<T, DotSet>>,
}

impl<T> Default for OrSet<T> {
    fn default() -> Self {
        OrSet {
            inner: Causal {
                store: DotMap::default(),
                ctx: CausalContext::new(),
                keyed: false,
            },
        }
    }
}

causal_newtype!(OrSet [T] [T] store = DotMap<T, DotSet>;
    where T: Hash + Eq + Clone + std::fmt::Debug);

impl<T: Hash + Eq + Clone + std::fmt::Debug> OrSet<T> {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `element`; returns the delta.
    pub fn add(&mut self, replica: ReplicaId, element: T) -> Self {
        let dot = self.inner.ctx.next_dot(replica);
        let mut ctx = self.dots_of(&element);
        ctx.insert(dot);
        self.apply(Causal::keyed(
            DotMap::single(element, DotSet::single(dot)),
            ctx,
        ))
    }

    /// Removes `element` (the adds of it seen so far); returns the delta.
    pub fn remove<Q>(&mut self, element: &Q) -> Self
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some((key, _)) = self.inner.store.entries.get_key_value(element) else {
            return OrSet {
                inner: Causal::empty_delta(),
            };
        };
        let key = key.clone();
        let ctx = self.dots_of::<T>(&key);
        self.apply(Causal::keyed(DotMap::single(key, DotSet::default()), ctx))
    }

    /// True when `element` is in the set.
    pub fn contains<Q>(&self, element: &Q) -> bool
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner
            .store
            .entries
            .get(element)
            .is_some_and(|s| !s.is_empty())
    }

    /// The elements, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.inner.store.present_keys()
    }

    /// How many elements.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True when the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn dots_of<Q>(&self, element: &Q) -> CausalContext
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner
            .store
            .entries
            .get(element)
            .map(|s| s.iter().collect())
            .unwrap_or_default()
    }

    fn apply(&mut self, delta: Causal<DotMap<T, DotSet>>) -> Self {
        self.inner.join(&delta);
        OrSet { inner: delta }
    }
}
