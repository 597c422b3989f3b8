use super::dense_map::DenseMap;
use super::{CausalContext, Dot, DotStore, JoinScope};
use serde::{Deserialize, Serialize};
use std::hash::Hash;

/// A map from keys to dot stores: the store of maps and sets. A key is present while its store
/// holds a dot; removing a key forgets its store, and the causal context remembers the dots.
///
/// Its entries live in one dense vector and the hash index holds only 4-byte positions, so a
/// large map pays little per-bucket slack for its (large) entries.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize, S: Serialize",
    deserialize = "K: Deserialize<'de> + Hash + Eq, S: Deserialize<'de>"
))]
#[serde(transparent)]
pub struct DotMap<K, S> {
    pub(crate) entries: DenseMap<K, S>,
}

impl<K, S> Default for DotMap<K, S> {
    fn default() -> Self {
        DotMap {
            entries: DenseMap::default(),
        }
    }
}

impl<K: Hash + Eq, S> DotMap<K, S> {
    /// A map holding one key.
    pub fn single(key: K, store: S) -> Self {
        let mut entries = DenseMap::default();
        entries.insert(key, store);
        DotMap { entries }
    }

    /// The store under `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&S>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.get(key)
    }

    /// Keys and their stores (including empty stores that a keyed delta carries).
    pub fn iter(&self) -> impl Iterator<Item = (&K, &S)> {
        self.entries.iter()
    }

    /// The keys whose store holds a dot: the keys present (a keyed delta also lists keys
    /// with nothing under them, to say what it removed).
    pub fn present_keys(&self) -> impl Iterator<Item = &K>
    where
        S: DotStore,
    {
        self.entries
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(k, _)| k)
    }

    /// How many keys (including empty stores that a keyed delta carries).
    pub fn key_count(&self) -> usize {
        self.entries.len()
    }
}

impl<K, S> DotStore for DotMap<K, S>
where
    K: Hash + Eq + Clone + std::fmt::Debug,
    S: DotStore,
{
    fn is_empty(&self) -> bool {
        self.entries.values().all(S::is_empty)
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(Dot)) {
        self.entries.values().for_each(|s| s.for_each_dot(f));
    }

    fn for_each_dot_in_keys_of(&self, keys_of: &Self, f: &mut dyn FnMut(Dot)) {
        for key in keys_of.entries.keys() {
            if let Some(s) = self.entries.get(key) {
                s.for_each_dot(f);
            }
        }
    }

    fn join(
        &mut self,
        ctx: &CausalContext,
        other: &Self,
        other_ctx: &CausalContext,
        scope: JoinScope,
    ) {
        if !scope.other_keyed {
            // The other side's context may cover dots under keys it does not list (a full
            // state forgets removed keys), so every key of ours must be checked for dots it
            // has seen and dropped.
            let empty = S::default();
            self.entries.retain(|key, store| {
                if !other.entries.contains_key(key) {
                    store.join(ctx, &empty, other_ctx, JoinScope::NESTED);
                }
                scope.keep_empty || !store.is_empty()
            });
        }
        for (key, theirs) in other.entries.iter() {
            match self.entries.get_full_mut(key) {
                Some((i, _, mine)) => {
                    mine.join(ctx, theirs, other_ctx, JoinScope::NESTED);
                    if mine.is_empty() && !scope.keep_empty {
                        self.entries.swap_remove_index(i);
                    }
                }
                None => {
                    let mut mine = S::default();
                    mine.join(ctx, theirs, other_ctx, JoinScope::NESTED);
                    if !mine.is_empty() || scope.keep_empty {
                        self.entries.insert(key.clone(), mine);
                    }
                }
            }
        }
    }

    fn restrict(&self, keep: &dyn Fn(Dot) -> bool, keep_keys: bool) -> Self {
        DotMap {
            entries: self
                .entries
                .iter()
                .map(|(k, s)| (k.clone(), s.restrict(keep, false)))
                .filter(|(_, s)| keep_keys || !s.is_empty())
                .collect(),
        }
    }

    fn same(&self, other: &Self) -> bool {
        let non_empty = |m: &Self| m.entries.values().filter(|s| !s.is_empty()).count();
        non_empty(self) == non_empty(other)
            && self
                .entries
                .iter()
                .filter(|(_, s)| !s.is_empty())
                .all(|(k, s)| other.entries.get(k).is_some_and(|o| s.same(o)))
    }
}
