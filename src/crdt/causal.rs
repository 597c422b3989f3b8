use super::{CausalContext, Crdt, Dot, DotMap, DotStore, JoinScope};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use thiserror::Error;

/// A causal CRDT state or delta: a dot store and the causal context that says which writes it
/// reflects. The join, the decomposition and the optimal delta are written once, here, for
/// every store.
///
/// # Keyed values
/// A value is *keyed* when every dot of its context is either alive in its store or belonged to
/// a top-level key its store still lists (possibly with nothing under it). Deltas made by
/// mutators are keyed, so joining one visits only its own keys: O(size of the delta), not of the
/// state. A full state is not keyed (it forgot the keys it removed: that is how herd keeps no
/// tombstones), so joining a full state checks every key of the receiver. Keyedness is a
/// promise about cost, never about meaning: equality ignores it and both joins give the same
/// result.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "RawCausal<S>", into = "RawCausal<S>")]
#[serde(bound(
    serialize = "S: DotStore + Serialize",
    deserialize = "S: DotStore + Deserialize<'de>"
))]
pub struct Causal<S> {
    pub(crate) store: S,
    pub(crate) ctx: CausalContext,
    pub(crate) keyed: bool,
}

#[derive(Serialize, Deserialize)]
struct RawCausal<S> {
    store: S,
    ctx: CausalContext,
    keyed: bool,
}

/// A decoded causal value broke an invariant. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CausalError {
    /// The store holds a dot its own context does not: a value cannot contain a write it has
    /// not seen.
    #[error("store holds dot {0:?} that its causal context does not cover")]
    DotOutsideContext(Dot),
}

impl<S: DotStore> Causal<S> {
    /// A full state made of `store` and `ctx`, as a replica loads it from storage: checked
    /// like a decoded value, so a damaged store cannot smuggle in a dot its context lacks.
    ///
    /// # Errors
    /// [`CausalError::DotOutsideContext`] when `store` holds a dot `ctx` does not cover.
    pub fn from_state(store: S, ctx: CausalContext) -> Result<Self, CausalError> {
        Self::try_from(RawCausal {
            store,
            ctx,
            keyed: false,
        })
    }
}

impl<S: DotStore> TryFrom<RawCausal<S>> for Causal<S> {
    type Error = CausalError;
    fn try_from(raw: RawCausal<S>) -> Result<Self, CausalError> {
        let mut stray = None;
        raw.store.for_each_dot(&mut |d| {
            if stray.is_none() && !raw.ctx.contains(d) {
                stray = Some(d);
            }
        });
        if let Some(dot) = stray {
            return Err(CausalError::DotOutsideContext(dot));
        }
        Ok(Causal {
            store: raw.store,
            ctx: raw.ctx,
            keyed: raw.keyed,
        })
    }
}

impl<S> From<Causal<S>> for RawCausal<S> {
    fn from(c: Causal<S>) -> Self {
        RawCausal {
            store: c.store,
            ctx: c.ctx,
            keyed: c.keyed,
        }
    }
}

impl<S: Default> Default for Causal<S> {
    /// The empty *state* (not keyed: removes will forget their keys).
    fn default() -> Self {
        Causal {
            store: S::default(),
            ctx: CausalContext::new(),
            keyed: false,
        }
    }
}

impl<S: DotStore> PartialEq for Causal<S> {
    fn eq(&self, other: &Self) -> bool {
        self.ctx == other.ctx && self.store.same(&other.store)
    }
}

impl<S: DotStore> Causal<S> {
    /// A delta made of `store` and `ctx`, keyed: `ctx` must only hold dots alive in `store` or
    /// belonging to keys `store` lists.
    pub(crate) fn keyed(store: S, ctx: CausalContext) -> Self {
        Causal {
            store,
            ctx,
            keyed: true,
        }
    }

    /// An empty keyed delta, to accumulate mutator deltas into (a delta group).
    pub fn empty_delta() -> Self {
        Self::keyed(S::default(), CausalContext::new())
    }

    /// The dot store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The causal context: every write this value reflects.
    pub fn context(&self) -> &CausalContext {
        &self.ctx
    }

    /// True when the value is keyed (see the type docs).
    pub fn is_keyed(&self) -> bool {
        self.keyed
    }

    /// The part of `self` a replica whose context is `seen` has not seen: entries with unseen
    /// dots, and the unseen part of the context.
    ///
    /// Unlike [`Crdt::delta`] this needs only the peer's context, but a context cannot tell
    /// whether the peer still holds a value that `self` has since removed (a remove creates no
    /// new dot); herd's sync protocol learns that by comparing per-key digests instead.
    pub fn delta_since(&self, seen: &CausalContext) -> Self {
        Causal {
            store: self.store.restrict(&|d| !seen.contains(d), false),
            ctx: self.ctx.difference(seen),
            keyed: false,
        }
    }

    fn alive_dots(&self) -> HashSet<Dot> {
        let mut dots = HashSet::new();
        self.store.for_each_dot(&mut |d| {
            dots.insert(d);
        });
        dots
    }
}

impl<K, S> Causal<DotMap<K, S>>
where
    K: std::hash::Hash + Eq + Clone + std::fmt::Debug,
    S: DotStore,
{
    /// Joins a peer's complete entries for one key, deciding removals with the peer's context.
    ///
    /// `theirs` must be *everything* the peer holds under `key` (possibly nothing), and
    /// `their_ctx` any context the peer had seen when it read them (a subset is fine: it only
    /// removes less). Our dots under `key` that the peer has seen but no longer holds were
    /// removed or overwritten there, so they go; their dots we have not seen are added. Only
    /// the dots actually received are added to our context: the peer's context may cover
    /// writes under other keys that it did not send, and recording those as seen would make us
    /// refuse them later (DeltaCrdt's lost-keys bug, issue #65).
    ///
    /// Returns true when our entries under `key` changed.
    pub fn join_key_from_peer(&mut self, key: &K, theirs: &S, their_ctx: &CausalContext) -> bool {
        let before = self.key_dots(key);
        match self.store.entries.get_full_mut(key) {
            Some((i, _, mine)) => {
                mine.join(&self.ctx, theirs, their_ctx, JoinScope::NESTED);
                if mine.is_empty() && !self.keyed {
                    self.store.entries.swap_remove_index(i);
                }
            }
            None => {
                let mut mine = S::default();
                mine.join(&self.ctx, theirs, their_ctx, JoinScope::NESTED);
                if !mine.is_empty() {
                    self.store.entries.insert(key.clone(), mine);
                }
            }
        }
        theirs.for_each_dot(&mut |d| self.ctx.insert(d));
        self.key_dots(key) != before
    }

    /// The removal half of [`join_key_from_peer`](Self::join_key_from_peer), for an entry too
    /// large to travel with the peer's context: removes our dots under `key` that the peer has
    /// seen (`their_ctx`) and no longer holds there (`their_live`, sorted). Adds nothing.
    ///
    /// Returns true when our entries under `key` changed.
    pub fn remove_seen_under_key(
        &mut self,
        key: &K,
        their_live: &[Dot],
        their_ctx: &CausalContext,
    ) -> bool {
        let gone = |d: Dot| their_ctx.contains(d) && their_live.binary_search(&d).is_err();
        let Some((i, _, mine)) = self.store.entries.get_full_mut(key) else {
            return false;
        };
        let mut any = false;
        mine.for_each_dot(&mut |d| any |= gone(d));
        if !any {
            return false;
        }
        *mine = mine.restrict(&|d| !gone(d), false);
        if mine.is_empty() && !self.keyed {
            self.store.entries.swap_remove_index(i);
        }
        true
    }

    /// The dots stored under `key`, sorted.
    pub fn key_dots<Q>(&self, key: &Q) -> Vec<Dot>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let mut dots = Vec::new();
        if let Some(store) = self.store.entries.get(key) {
            store.for_each_dot(&mut |d| dots.push(d));
        }
        dots.sort_unstable();
        dots
    }
}

impl<S: DotStore> Crdt for Causal<S> {
    fn join(&mut self, other: &Self) {
        let scope = JoinScope {
            other_keyed: other.keyed,
            keep_empty: self.keyed && other.keyed,
        };
        self.store.join(&self.ctx, &other.store, &other.ctx, scope);
        self.ctx.union(&other.ctx);
        self.keyed &= other.keyed;
    }

    fn decompose(&self) -> Vec<Self> {
        let alive = self.alive_dots();
        let mut parts: Vec<Self> = alive
            .iter()
            .map(|&dot| {
                let store = self.store.restrict(&|d| d == dot, false);
                Self::keyed(store, CausalContext::from_iter([dot]))
            })
            .collect();
        parts.extend(
            self.ctx
                .dots()
                .filter(|d| !alive.contains(d))
                .map(|dot| Causal {
                    store: S::default(),
                    ctx: CausalContext::from_iter([dot]),
                    keyed: false,
                }),
        );
        parts
    }

    fn delta(&self, other: &Self) -> Self {
        // Alive parts of `self` are new to `other` iff it has not seen their dot; a removed dot
        // is new iff `other` has not seen it, or still holds it alive (it missed the remove).
        let store = self.store.restrict(&|d| !other.ctx.contains(d), self.keyed);
        let mut ctx = self.ctx.difference(&other.ctx);
        let mine = self.alive_dots();
        let mut theirs_dead_here = Vec::new();
        // A keyed `self` removed dots only under its own keys: no need to look at the rest.
        let mut visit = |d: Dot| {
            if self.ctx.contains(d) && !mine.contains(&d) {
                theirs_dead_here.push(d);
            }
        };
        if self.keyed {
            other.store.for_each_dot_in_keys_of(&self.store, &mut visit);
        } else {
            other.store.for_each_dot(&mut visit);
        }
        theirs_dead_here.into_iter().for_each(|d| ctx.insert(d));
        let mut delta = Causal {
            store,
            ctx,
            keyed: self.keyed,
        };
        if delta.keyed {
            // Keys were kept so that removed dots stay attributed; if none was kept, drop the
            // empty keys.
            let alive = delta.alive_dots();
            if delta.ctx.dots().all(|d| alive.contains(&d)) {
                delta.store = delta.store.restrict(&|_| true, false);
            }
        }
        delta
    }

    fn is_bottom(&self) -> bool {
        self.ctx.is_empty() && self.store.is_empty()
    }
}

/// Implements `PartialEq`, [`Crdt`] and [`Embeddable`](super::Embeddable) for a newtype
/// `{ inner: Causal<Store> }` by forwarding to [`Causal`].
macro_rules! causal_newtype {
    ($ty:ident [$($gen:tt)*] [$($args:tt)*] store = $store:ty; where $($bounds:tt)*) => {
        impl<$($gen)*> PartialEq for $ty<$($args)*> where $($bounds)* {
            fn eq(&self, other: &Self) -> bool {
                self.inner == other.inner
            }
        }

        impl<$($gen)*> $crate::crdt::Crdt for $ty<$($args)*> where $($bounds)* {
            fn join(&mut self, other: &Self) {
                self.inner.join(&other.inner);
            }
            fn decompose(&self) -> Vec<Self> {
                self.inner.decompose().into_iter().map(|inner| Self { inner }).collect()
            }
            fn delta(&self, other: &Self) -> Self {
                Self { inner: self.inner.delta(&other.inner) }
            }
            fn is_bottom(&self) -> bool {
                self.inner.is_bottom()
            }
        }

        impl<$($gen)*> $crate::crdt::Embeddable for $ty<$($args)*> where $($bounds)* {
            type Store = $store;
            fn from_causal(inner: $crate::crdt::Causal<$store>) -> Self {
                Self { inner }
            }
            fn into_causal(self) -> $crate::crdt::Causal<$store> {
                self.inner
            }
            fn as_causal(&self) -> &$crate::crdt::Causal<$store> {
                &self.inner
            }
            fn as_causal_mut(&mut self) -> &mut $crate::crdt::Causal<$store> {
                &mut self.inner
            }
        }
    };
}
pub(crate) use causal_newtype;
