//! Delta-state CRDTs (Almeida, Shoker, Baquero, "Delta State Replicated Data Types", 2018).
//!
//! This module owns the data: what a replica holds, how two states join, and which part of a
//! state another replica still lacks. It does not own time (see [`crate::clock`]), nor moving
//! bytes between replicas.
//!
//! * [`Dot`], [`ReplicaId`] and [`CausalContext`] name writes and remember which were seen.
//! * The dot stores [`DotSet`], [`DotFun`] and [`DotMap`] are the building blocks; [`Causal`]
//!   pairs a store with its context and implements the join once for all of them.
//! * The types: [`AwLwwMap`] (the workhorse: add-wins keys, last-writer-wins values),
//!   [`OrSet`], [`GCounter`], [`PnCounter`], [`MvRegister`], [`LwwRegister`], [`EwFlag`], the
//!   nested [`OrMap`], whose values are CRDTs themselves, and the two made to sit inside it:
//!   [`AwLwwRegister`] (a causal last-writer-wins register) and [`Counter`] (a causal counter).
//! * [`Document`] is a nested document of [`Path`]s to last-writer-wins leaves: fields merge
//!   one by one.
//!
//! Every type implements [`Crdt`]: mutators return a *delta* (a small state holding just the
//! change) and apply it locally; [`Crdt::join`] merges any state or delta; [`Crdt::decompose`]
//! splits a state into join-irreducible parts; [`Crdt::delta`] is the optimal delta Δ(a, b), the
//! join of exactly those parts of `a` that `b` lacks.
//!
//! # Examples
//! ```
//! use herd::clock::Timestamp;
//! use herd::crdt::{AwLwwMap, Crdt, ReplicaId};
//!
//! let (a_id, b_id) = (ReplicaId::new(1), ReplicaId::new(2));
//! let mut a = AwLwwMap::new();
//! let mut b = AwLwwMap::new();
//! let d1 = a.put(a_id, Timestamp::new(10, 0), "colour", "red");
//! let d2 = b.put(b_id, Timestamp::new(11, 0), "colour", "blue");
//! let d3 = b.remove(&"size");
//! // Deltas may arrive in any order, any number of times.
//! a.join(&d2);
//! a.join(&d3);
//! b.join(&d1);
//! b.join(&d1);
//! assert_eq!(a, b);
//! assert_eq!(a.get(&"colour"), Some(&"blue")); // the later timestamp wins everywhere
//! ```

pub(crate) mod aw_lww_map;
mod aw_lww_register;
mod causal;
mod context;
mod counter;
mod counters;
mod dense_map;
mod document;
mod dot;
mod dot_fun;
mod dot_map;
mod dot_set;
mod ew_flag;
mod lww_register;
mod mv_register;
mod or_map;
mod or_set;

#[cfg(test)]
mod laws;

pub use aw_lww_map::{AwLwwMap, Lww};
pub use aw_lww_register::AwLwwRegister;
pub use causal::{Causal, CausalError};
pub use context::{CausalContext, ContextError};
pub use counter::Counter;
pub(crate) use counter::sum as counter_sum;
pub use counters::{GCounter, PnCounter};
pub use document::{Document, Node, Path, Segment};
pub use dot::{Dot, ReplicaId};
pub use dot_fun::DotFun;
pub use dot_map::DotMap;
pub use dot_set::DotSet;
pub use ew_flag::EwFlag;
pub use lww_register::LwwRegister;
pub use mv_register::MvRegister;
pub use or_map::OrMap;
pub use or_set::OrSet;

/// A join-semilattice with delta mutators: the one trait every herd CRDT implements.
///
/// Laws (checked by property tests for every type): [`join`](Crdt::join) is commutative,
/// associative and idempotent; the join of [`decompose`](Crdt::decompose) is the state itself;
/// `b ⊔ Δ(a, b) = b ⊔ a` and no part of `Δ(a, b)` is already in `b`.
pub trait Crdt: Clone + Default + PartialEq + std::fmt::Debug {
    /// Merges `other` (a full state or a delta) into `self`: the least upper bound.
    fn join(&mut self, other: &Self);

    /// The join-irreducible parts whose join is `self`. Can be large: one part per dot.
    fn decompose(&self) -> Vec<Self>;

    /// The optimal delta Δ(self, other): the join of exactly those irreducible parts of `self`
    /// that `other` does not already have. `other.join(&self.delta(&other))` equals
    /// `other.join(&self)`.
    fn delta(&self, other: &Self) -> Self;

    /// True for the bottom element (the empty state): joining it changes nothing.
    fn is_bottom(&self) -> bool;

    /// The lattice order: `self ⊔ other == other`.
    fn leq(&self, other: &Self) -> bool {
        let mut joined = other.clone();
        joined.join(self);
        &joined == other
    }
}

/// A dot store: the data of a causal CRDT, every piece of it tagged with the [`Dot`] of the
/// write that created it. Paired with a [`CausalContext`] in [`Causal`].
///
/// Implemented by [`DotSet`], [`DotFun`] and [`DotMap`]; users compose these rather than
/// implementing the trait.
pub trait DotStore: Clone + Default + std::fmt::Debug {
    /// True when the store holds no dot.
    fn is_empty(&self) -> bool;

    /// Calls `f` with every dot in the store.
    fn for_each_dot(&self, f: &mut dyn FnMut(Dot));

    /// Calls `f` with every dot stored under the top-level keys that `keys_of` also has
    /// (for stores without keys: every dot).
    fn for_each_dot_in_keys_of(&self, keys_of: &Self, f: &mut dyn FnMut(Dot)) {
        let _ = keys_of;
        self.for_each_dot(f);
    }

    /// The causal join of `(self, ctx)` with `(other, other_ctx)`, leaving the store part in
    /// `self` (the caller unions the contexts): a dot survives if both sides have it, or one
    /// side has it and the other side has not seen it.
    fn join(
        &mut self,
        ctx: &CausalContext,
        other: &Self,
        other_ctx: &CausalContext,
        scope: JoinScope,
    );

    /// The store restricted to the dots for which `keep` is true. With `keep_keys`, a map keeps
    /// its top-level keys even when nothing under them is kept.
    fn restrict(&self, keep: &dyn Fn(Dot) -> bool, keep_keys: bool) -> Self;

    /// Semantic equality: the same dots with the same values (empty map entries do not count).
    fn same(&self, other: &Self) -> bool;
}

/// How far a join has to look, decided by [`Causal`]. Only [`DotMap`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinScope {
    /// The other side is *keyed*: every dot of its context is alive in its store or belonged to
    /// a top-level key its store lists, so entries under other keys need not be visited.
    pub other_keyed: bool,
    /// Keep top-level keys whose entries became empty (the result stays keyed).
    pub keep_empty: bool,
}

impl JoinScope {
    /// The scope of a join below the top level: look everywhere, keep nothing empty.
    pub const NESTED: JoinScope = JoinScope {
        other_keyed: false,
        keep_empty: false,
    };
}

/// A causal CRDT that can be a value inside an [`OrMap`]: it is a [`Causal`] store underneath.
pub trait Embeddable: Crdt {
    /// The dot store holding this type's data.
    type Store: DotStore;
    /// Wraps a causal value.
    fn from_causal(causal: Causal<Self::Store>) -> Self;
    /// Unwraps into the causal value.
    fn into_causal(self) -> Causal<Self::Store>;
    /// The causal value underneath.
    fn as_causal(&self) -> &Causal<Self::Store>;
    /// The causal value underneath, mutably: for the sync protocol, which keeps its Merkle tree
    /// in step with every change it makes.
    fn as_causal_mut(&mut self) -> &mut Causal<Self::Store>;
}
