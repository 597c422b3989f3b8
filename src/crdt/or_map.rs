use super::causal::causal_newtype;
use super::{Causal, CausalContext, Crdt, DotMap, DotStore, Embeddable};
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::hash::Hash;

/// A map whose values are causal CRDTs themselves, all sharing the map's causal context: a
/// JSON-like document where concurrent edits of different fields (or of the same set, counter
/// of flags...) all survive. Removing a key removes what was seen under it; an edit concurrent
/// with the remove survives (add wins).
///
/// # Examples
/// ```
/// use herd::crdt::{Crdt, EwFlag, MvRegister, OrMap, ReplicaId};
/// let (a_id, b_id) = (ReplicaId::new(1), ReplicaId::new(2));
/// let mut a: OrMap<&str, MvRegister<u32>> = OrMap::new();
/// let mut b = a.clone();
/// let da = a.update("width", |w| w.write(a_id, 10));
/// let db = b.update("height", |h| h.write(b_id, 20));
/// a.join(&db);
/// b.join(&da);
/// assert_eq!(a, b);
/// assert_eq!(a.get(&"width").unwrap().values(), vec![&10]);
/// assert_eq!(a.get(&"height").unwrap().values(), vec![&20]);
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize + Hash + Eq + Clone + std::fmt::Debug, C::Store: Serialize",
    deserialize = "K: Deserialize<'de> + Hash + Eq + Clone + std::fmt::Debug, C::Store: Deserialize<'de>"
))]
#[serde(transparent)]
pub struct OrMap<K, C: Embeddable> {
    inner: Causal<DotMap<K, C::Store>>,
}

impl<K, C: Embeddable> Default for OrMap<K, C> {
    fn default() -> Self {
        OrMap {
            inner: Causal {
                store: DotMap::default(),
                ctx: CausalContext::new(),
                keyed: false,
            },
        }
    }
}

causal_newtype!(OrMap [K, C: Embeddable] [K, C] store = DotMap<K, C::Store>;
    where K: Hash + Eq + Clone + std::fmt::Debug);

impl<K: Hash + Eq + Clone + std::fmt::Debug, C: Embeddable> OrMap<K, C> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs a mutator of `C` on the value under `key` (the empty value if absent) and returns
    /// the map's delta. `edit` receives the current value and returns the value's delta, as
    /// every mutator does.
    pub fn update(&mut self, key: K, edit: impl FnOnce(&mut C) -> C) -> Self {
        let mut value = self.view(&key);
        let inner = edit(&mut value).into_causal();
        let delta = Causal::keyed(DotMap::single(key, inner.store), inner.ctx);
        self.inner.join(&delta);
        OrMap { inner: delta }
    }

    /// Removes `key` (what was seen under it); returns the delta.
    pub fn remove<Q>(&mut self, key: &Q) -> Self
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some((key, store)) = self.inner.store.entries.get_key_value(key) else {
            return OrMap {
                inner: Causal::empty_delta(),
            };
        };
        let mut ctx = CausalContext::new();
        store.for_each_dot(&mut |d| ctx.insert(d));
        let delta = Causal::keyed(DotMap::single(key.clone(), C::Store::default()), ctx);
        self.inner.join(&delta);
        OrMap { inner: delta }
    }

    /// The value under `key`, as a standalone CRDT (a copy sharing the map's context).
    pub fn get<Q>(&self, key: &Q) -> Option<C>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let store = self.inner.store.entries.get(key)?;
        (!store.is_empty()).then(|| {
            C::from_causal(Causal {
                store: store.clone(),
                ctx: self.inner.ctx.clone(),
                keyed: false,
            })
        })
    }

    /// The keys present, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.inner.store.present_keys()
    }

    /// How many keys are present.
    pub fn len(&self) -> usize {
        self.keys().count()
    }

    /// True when no key is present.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn view(&self, key: &K) -> C {
        C::from_causal(Causal {
            store: self
                .inner
                .store
                .entries
                .get(key)
                .cloned()
                .unwrap_or_default(),
            ctx: self.inner.ctx.clone(),
            keyed: false,
        })
    }
}
