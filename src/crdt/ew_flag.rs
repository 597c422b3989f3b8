use super::causal::causal_newtype;
use super::{Causal, CausalContext, DotSet, ReplicaId};
use serde::{Deserialize, Serialize};

/// An enable-wins flag: enabling concurrently with disabling leaves the flag enabled.
///
/// # Examples
/// ```
/// use herd::crdt::{Crdt, EwFlag, ReplicaId};
/// let mut a = EwFlag::new();
/// a.enable(ReplicaId::new(1));
/// let mut b = a.clone();
/// let off = a.disable();
/// let on = b.enable(ReplicaId::new(2));
/// a.join(&on);
/// b.join(&off);
/// assert!(a.is_enabled() && b.is_enabled());
/// ```
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EwFlag {
    inner: Causal<DotSet>,
}

causal_newtype!(EwFlag [] [] store = DotSet; where);

impl EwFlag {
    /// A disabled flag.
    pub fn new() -> Self {
        Self::default()
    }

    /// True while some enable survives.
    pub fn is_enabled(&self) -> bool {
        !self.inner.store.is_empty()
    }

    /// Enables the flag; returns the delta.
    pub fn enable(&mut self, replica: ReplicaId) -> Self {
        let dot = self.inner.ctx.next_dot(replica);
        let mut ctx: CausalContext = self.inner.store.iter().collect();
        ctx.insert(dot);
        self.apply(Causal::keyed(DotSet::single(dot), ctx))
    }

    /// Disables the flag (forgets the enables it has seen); returns the delta.
    pub fn disable(&mut self) -> Self {
        let ctx: CausalContext = self.inner.store.iter().collect();
        self.apply(Causal::keyed(DotSet::default(), ctx))
    }

    fn apply(&mut self, delta: Causal<DotSet>) -> Self {
        use super::Crdt;
        self.inner.join(&delta);
        EwFlag { inner: delta }
    }
}
