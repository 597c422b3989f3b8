use super::causal::causal_newtype;
use super::{Causal, CausalContext, Crdt, Dot, DotFun, DotStore, ReplicaId};
use serde::{Deserialize, Serialize};

/// A multi-value register: a write replaces the values it has seen; concurrent writes all
/// survive until a later write that has seen them, and a read returns every survivor.
///
/// # Examples
/// ```
/// use herd::crdt::{Crdt, MvRegister, ReplicaId};
/// let mut a = MvRegister::new();
/// let mut b = MvRegister::new();
/// let da = a.write(ReplicaId::new(1), "tea");
/// let db = b.write(ReplicaId::new(2), "coffee");
/// a.join(&db);
/// b.join(&da);
/// assert_eq!(a.values(), vec![&"tea", &"coffee"]);
/// a.write(ReplicaId::new(1), "water");
/// assert_eq!(a.values(), vec![&"water"]);
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound(
    serialize = "V: Serialize + Clone + PartialEq + std::fmt::Debug",
    deserialize = "V: Deserialize<'de> + Clone + PartialEq + std::fmt::Debug"
))]
#[serde(transparent)]
pub struct MvRegister<V> {
    inner: Causal<DotFun<V>>,
}

impl<V> Default for MvRegister<V> {
    fn default() -> Self {
        MvRegister {
            inner: Causal {
                store: DotFun::default(),
                ctx: CausalContext::new(),
                keyed: false,
            },
        }
    }
}

causal_newtype!(MvRegister [V] [V] store = DotFun<V>;
    where V: Clone + PartialEq + std::fmt::Debug);

impl<V: Clone + PartialEq + std::fmt::Debug> MvRegister<V> {
    /// An empty register.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `value`, replacing every value seen; returns the delta.
    pub fn write(&mut self, replica: ReplicaId, value: V) -> Self {
        let dot = self.inner.ctx.next_dot(replica);
        let mut ctx = CausalContext::new();
        self.inner.store.for_each_dot(&mut |d| ctx.insert(d));
        ctx.insert(dot);
        let delta = Causal::keyed(DotFun::single(dot, value), ctx);
        self.inner.join(&delta);
        MvRegister { inner: delta }
    }

    /// The surviving values, ordered by the dot that wrote them.
    pub fn values(&self) -> Vec<&V> {
        self.inner.store.iter().map(|(_, v)| v).collect()
    }

    /// The surviving values with their dots.
    pub fn entries(&self) -> impl Iterator<Item = (Dot, &V)> {
        self.inner.store.iter()
    }
}
