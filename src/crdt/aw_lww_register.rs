use super::aw_lww_map::{Lww, rank};
use super::causal::causal_newtype;
use super::{Causal, CausalContext, Crdt, Dot, DotFun, DotStore, ReplicaId};
use crate::clock::Timestamp;
use serde::{Deserialize, Serialize};

/// A causal last-writer-wins register: the register that sits inside an [`OrMap`](super::OrMap)
/// or a [`Document`](super::Document) field.
///
/// Unlike [`LwwRegister`](super::LwwRegister), which keeps one winning write and so can never be
/// emptied, this register remembers *which* writes it has seen (their dots), like every causal
/// type here:
/// * a write replaces the writes it has seen, and reads pick the greatest `(timestamp, replica)`
///   among the survivors of concurrent writes, so every replica picks the same winner;
/// * [`clear`](Self::clear) (or removing the field that holds it) removes only the writes it
///   has seen: a write concurrent with the clear survives (add wins), and a cleared register
///   stays cleared otherwise.
///
/// # Examples
/// ```
/// use herd::clock::Timestamp;
/// use herd::crdt::{AwLwwRegister, Crdt, ReplicaId};
///
/// let (a_id, b_id) = (ReplicaId::new(1), ReplicaId::new(2));
/// let mut a = AwLwwRegister::new();
/// a.set(a_id, Timestamp::new(1, 0), "draft");
/// let mut b = a.clone();
/// // Concurrently: a clears the register, b writes it. The write survives.
/// let cleared = a.clear();
/// let written = b.set(b_id, Timestamp::new(2, 0), "final");
/// a.join(&written);
/// b.join(&cleared);
/// assert_eq!(a, b);
/// assert_eq!(a.get(), Some(&"final"));
/// // A clear that has seen every write empties it everywhere.
/// let cleared = a.clear();
/// b.join(&cleared);
/// assert_eq!(b.get(), None);
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound(
    serialize = "V: Serialize + Clone + PartialEq + std::fmt::Debug",
    deserialize = "V: Deserialize<'de> + Clone + PartialEq + std::fmt::Debug"
))]
#[serde(transparent)]
pub struct AwLwwRegister<V> {
    inner: Causal<DotFun<Lww<V>>>,
}

impl<V> Default for AwLwwRegister<V> {
    fn default() -> Self {
        AwLwwRegister {
            inner: Causal {
                store: DotFun::default(),
                ctx: CausalContext::new(),
                keyed: false,
            },
        }
    }
}

causal_newtype!(AwLwwRegister [V] [V] store = DotFun<Lww<V>>;
    where V: Clone + PartialEq + std::fmt::Debug);

impl<V: Clone + PartialEq + std::fmt::Debug> AwLwwRegister<V> {
    /// An empty register.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `value`, stamped `ts` by `replica`, replacing every write seen; returns the delta.
    pub fn set(&mut self, replica: ReplicaId, ts: Timestamp, value: V) -> Self {
        let dot = self.inner.ctx.next_dot(replica);
        let mut ctx = CausalContext::new();
        self.inner.store.for_each_dot(&mut |d| ctx.insert(d));
        ctx.insert(dot);
        let delta = Causal::keyed(DotFun::single(dot, Lww { ts, value }), ctx);
        self.inner.join(&delta);
        AwLwwRegister { inner: delta }
    }

    /// Removes every write seen; returns the delta (empty when the register was empty).
    pub fn clear(&mut self) -> Self {
        let mut ctx = CausalContext::new();
        self.inner.store.for_each_dot(&mut |d| ctx.insert(d));
        if ctx.is_empty() {
            return Self::default();
        }
        let delta = Causal::keyed(DotFun::default(), ctx);
        self.inner.join(&delta);
        AwLwwRegister { inner: delta }
    }

    /// The winning value: the greatest `(timestamp, replica)` among the surviving writes.
    pub fn get(&self) -> Option<&V> {
        self.entry().map(|(_, e)| &e.value)
    }

    /// The winning write with its dot and timestamp.
    pub fn entry(&self) -> Option<(Dot, &Lww<V>)> {
        winner(&self.inner.store)
    }
}

/// The winning write of a register's store.
pub(crate) fn winner<V>(store: &DotFun<Lww<V>>) -> Option<(Dot, &Lww<V>)> {
    store.max_by_key(rank)
}
