//! One property-test law suite, instantiated for every CRDT type.
//!
//! Each case runs three replicas through a random schedule: local operations (each returning a
//! delta), deliveries of earlier deltas in any order and any number of times, and joins of
//! whole states. The laws are then checked on the states the schedule produced.

use super::*;
use crate::clock::Timestamp;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// A CRDT type with a random operation generator.
pub(super) trait Model: Crdt {
    type Op: std::fmt::Debug + Clone;
    fn op() -> BoxedStrategy<Self::Op>;
    /// Applies `op` as `replica` at logical time `step` (unique, increasing); returns the delta.
    fn apply(&mut self, replica: ReplicaId, step: u64, op: &Self::Op) -> Self;
}

#[derive(Debug, Clone)]
pub(super) enum Action<Op> {
    /// Replica `.0` applies an operation.
    Local(usize, Op),
    /// Replica `.0` joins the delta with (modular) index `.1` from the log of all deltas.
    Deliver(usize, usize),
    /// Replica `.0` joins replica `.1`'s whole state.
    Merge(usize, usize),
}

pub(super) fn schedule<M: Model>() -> impl Strategy<Value = Vec<Action<M::Op>>> {
    let action = prop_oneof![
        3 => (0..3usize, M::op()).prop_map(|(r, op)| Action::Local(r, op)),
        2 => (0..3usize, any::<usize>()).prop_map(|(r, i)| Action::Deliver(r, i)),
        1 => (0..3usize, 0..3usize).prop_map(|(r, s)| Action::Merge(r, s)),
    ];
    proptest::collection::vec(action, 0..40)
}

/// Runs a schedule; returns the three replicas and every delta made, in order.
pub(super) fn run<M: Model>(actions: &[Action<M::Op>]) -> ([M; 3], Vec<M>) {
    let mut replicas: [M; 3] = Default::default();
    let mut log: Vec<M> = Vec::new();
    for (step, action) in actions.iter().enumerate() {
        match action {
            Action::Local(r, op) => {
                let id = ReplicaId::new(*r as u64 + 1);
                log.push(replicas[*r].apply(id, step as u64 + 1, op));
            }
            Action::Deliver(r, i) if !log.is_empty() => {
                let delta = log[i % log.len()].clone();
                replicas[*r].join(&delta);
            }
            Action::Deliver(..) => {}
            Action::Merge(r, s) => {
                let other = replicas[*s].clone();
                replicas[*r].join(&other);
            }
        }
    }
    (replicas, log)
}

fn joined<M: Crdt>(a: &M, b: &M) -> M {
    let mut out = a.clone();
    out.join(b);
    out
}

/// Every law, on the outcome of one schedule. `order` permutes and duplicates the delta log.
pub(super) fn check_laws<M: Model>(
    actions: &[Action<M::Op>],
    order: &[usize],
) -> Result<(), TestCaseError> {
    let ([a, b, c], log) = run::<M>(actions);

    // Join is a semilattice: commutative, associative, idempotent.
    prop_assert_eq!(joined(&a, &b), joined(&b, &a), "commutative");
    prop_assert_eq!(
        joined(&joined(&a, &b), &c),
        joined(&a, &joined(&b, &c)),
        "associative"
    );
    prop_assert_eq!(joined(&a, &a), a.clone(), "idempotent");
    prop_assert!(M::default().is_bottom());
    prop_assert_eq!(joined(&a, &M::default()), a.clone(), "bottom is neutral");

    // Delta equivalence: the deltas, shuffled and duplicated, give the join of full states.
    let all = joined(&joined(&a, &b), &c);
    let mut from_deltas = M::default();
    if !log.is_empty() {
        for &i in order {
            from_deltas.join(&log[i % log.len()]);
        }
        for d in &log {
            from_deltas.join(d);
        }
    }
    prop_assert_eq!(&from_deltas, &all, "deltas in any order = join of states");
    // Deltas also join correctly *into each other* first (delta groups), then into a state.
    let mut group = M::default();
    for d in log.iter().rev() {
        let mut g = d.clone();
        g.join(&group);
        group = g;
    }
    prop_assert_eq!(joined(&M::default(), &group), all.clone(), "delta group");

    for (x, y) in [(&a, &b), (&b, &c), (&c, &a), (&all, &a), (&a, &all)] {
        // Decomposition: the parts join back to the state, none is bottom.
        let parts = x.decompose();
        let mut rebuilt = M::default();
        for p in &parts {
            prop_assert!(!p.is_bottom(), "irreducible parts are not bottom");
            rebuilt.join(p);
        }
        prop_assert_eq!(&rebuilt, x, "join of decomposition");

        // Optimal delta: it completes y, and holds nothing y already has.
        let delta = x.delta(y);
        prop_assert_eq!(joined(y, &delta), joined(y, x), "Δ(x,y) ⊔ y = x ⊔ y");
        for p in delta.decompose() {
            prop_assert!(!p.leq(y), "part {:?} of Δ(x,y) is already in y", p);
        }
        prop_assert!(delta.leq(x), "Δ(x,y) ≤ x");
    }
    Ok(())
}

/// Instantiates the law suite for one type.
macro_rules! laws_for {
    ($name:ident, $ty:ty) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]
            #[test]
            fn $name(
                actions in schedule::<$ty>(),
                order in proptest::collection::vec(any::<usize>(), 0..60),
            ) {
                check_laws::<$ty>(&actions, &order)?;
            }
        }
    };
}

// ---- models: small key/value domains so that operations collide often ----

#[derive(Debug, Clone)]
pub(super) enum MapOp {
    Put(u8, u8),
    Remove(u8),
}

fn map_op() -> BoxedStrategy<MapOp> {
    prop_oneof![
        3 => (0..6u8, any::<u8>()).prop_map(|(k, v)| MapOp::Put(k, v)),
        1 => (0..6u8).prop_map(MapOp::Remove),
    ]
    .boxed()
}

impl Model for AwLwwMap<u8, u8> {
    type Op = MapOp;
    fn op() -> BoxedStrategy<MapOp> {
        map_op()
    }
    fn apply(&mut self, id: ReplicaId, step: u64, op: &MapOp) -> Self {
        match *op {
            MapOp::Put(k, v) => self.put(id, Timestamp::new(step, 0), k, v),
            MapOp::Remove(k) => self.remove(&k),
        }
    }
}

impl Model for OrSet<u8> {
    type Op = MapOp;
    fn op() -> BoxedStrategy<MapOp> {
        map_op()
    }
    fn apply(&mut self, id: ReplicaId, _: u64, op: &MapOp) -> Self {
        match *op {
            MapOp::Put(k, _) => self.add(id, k),
            MapOp::Remove(k) => self.remove(&k),
        }
    }
}

impl Model for GCounter {
    type Op = u8;
    fn op() -> BoxedStrategy<u8> {
        any::<u8>().boxed()
    }
    fn apply(&mut self, id: ReplicaId, _: u64, op: &u8) -> Self {
        self.increment(id, u64::from(*op))
    }
}

impl Model for PnCounter {
    type Op = (bool, u8);
    fn op() -> BoxedStrategy<(bool, u8)> {
        any::<(bool, u8)>().boxed()
    }
    fn apply(&mut self, id: ReplicaId, _: u64, &(up, by): &(bool, u8)) -> Self {
        if up {
            self.increment(id, u64::from(by))
        } else {
            self.decrement(id, u64::from(by))
        }
    }
}

impl Model for MvRegister<u8> {
    type Op = u8;
    fn op() -> BoxedStrategy<u8> {
        any::<u8>().boxed()
    }
    fn apply(&mut self, id: ReplicaId, _: u64, op: &u8) -> Self {
        self.write(id, *op)
    }
}

impl Model for LwwRegister<u8> {
    type Op = u8;
    fn op() -> BoxedStrategy<u8> {
        any::<u8>().boxed()
    }
    fn apply(&mut self, id: ReplicaId, step: u64, op: &u8) -> Self {
        self.set(id, Timestamp::new(step, 0), *op)
    }
}

impl Model for EwFlag {
    type Op = bool;
    fn op() -> BoxedStrategy<bool> {
        any::<bool>().boxed()
    }
    fn apply(&mut self, id: ReplicaId, _: u64, &on: &bool) -> Self {
        if on { self.enable(id) } else { self.disable() }
    }
}

#[derive(Debug, Clone)]
pub(super) enum DocOp {
    /// Add an element to the set under a field.
    Add(u8, u8),
    /// Remove an element from the set under a field.
    Discard(u8, u8),
    /// Remove a whole field.
    Drop(u8),
}

/// A two-level document: fields holding sets.
impl Model for OrMap<u8, OrSet<u8>> {
    type Op = DocOp;
    fn op() -> BoxedStrategy<DocOp> {
        prop_oneof![
            3 => (0..3u8, 0..4u8).prop_map(|(f, e)| DocOp::Add(f, e)),
            1 => (0..3u8, 0..4u8).prop_map(|(f, e)| DocOp::Discard(f, e)),
            1 => (0..3u8).prop_map(DocOp::Drop),
        ]
        .boxed()
    }
    fn apply(&mut self, id: ReplicaId, _: u64, op: &DocOp) -> Self {
        match *op {
            DocOp::Add(f, e) => self.update(f, |s| s.add(id, e)),
            DocOp::Discard(f, e) => self.update(f, |s| s.remove(&e)),
            DocOp::Drop(f) => self.remove(&f),
        }
    }
}

/// Three levels: fields holding maps of last-writer-wins values.
impl Model for OrMap<u8, AwLwwMap<u8, u8>> {
    type Op = (u8, MapOp);
    fn op() -> BoxedStrategy<(u8, MapOp)> {
        (0..3u8, map_op()).boxed()
    }
    fn apply(&mut self, id: ReplicaId, step: u64, (f, op): &(u8, MapOp)) -> Self {
        match *op {
            MapOp::Put(k, v) => self.update(*f, |m| m.put(id, Timestamp::new(step, 0), k, v)),
            MapOp::Remove(5) => self.remove(f),
            MapOp::Remove(k) => self.update(*f, |m| m.remove(&k)),
        }
    }
}

impl Model for AwLwwRegister<u8> {
    type Op = Option<u8>;
    fn op() -> BoxedStrategy<Option<u8>> {
        prop_oneof![3 => any::<u8>().prop_map(Some), 1 => Just(None)].boxed()
    }
    fn apply(&mut self, id: ReplicaId, step: u64, op: &Option<u8>) -> Self {
        match *op {
            Some(v) => self.set(id, Timestamp::new(step, 0), v),
            None => self.clear(),
        }
    }
}

impl Model for Counter {
    type Op = (bool, u8);
    fn op() -> BoxedStrategy<(bool, u8)> {
        any::<(bool, u8)>().boxed()
    }
    fn apply(&mut self, id: ReplicaId, _: u64, &(up, by): &(bool, u8)) -> Self {
        if up {
            self.increment(id, u64::from(by))
        } else {
            self.decrement(id, u64::from(by))
        }
    }
}

/// Fields holding causal registers and counters: removal of a field against concurrent writes.
#[derive(Debug, Clone)]
pub(super) enum FieldOp {
    Set(u8, u8),
    Clear(u8),
    Drop(u8),
}

fn field_op() -> BoxedStrategy<FieldOp> {
    prop_oneof![
        3 => (0..3u8, any::<u8>()).prop_map(|(f, v)| FieldOp::Set(f, v)),
        1 => (0..3u8).prop_map(FieldOp::Clear),
        1 => (0..3u8).prop_map(FieldOp::Drop),
    ]
    .boxed()
}

impl Model for OrMap<u8, AwLwwRegister<u8>> {
    type Op = FieldOp;
    fn op() -> BoxedStrategy<FieldOp> {
        field_op()
    }
    fn apply(&mut self, id: ReplicaId, step: u64, op: &FieldOp) -> Self {
        match *op {
            FieldOp::Set(f, v) => self.update(f, |r| r.set(id, Timestamp::new(step, 0), v)),
            FieldOp::Clear(f) => self.update(f, |r| r.clear()),
            FieldOp::Drop(f) => self.remove(&f),
        }
    }
}

impl Model for OrMap<u8, Counter> {
    type Op = FieldOp;
    fn op() -> BoxedStrategy<FieldOp> {
        field_op()
    }
    fn apply(&mut self, id: ReplicaId, _: u64, op: &FieldOp) -> Self {
        match *op {
            FieldOp::Set(f, v) => self.update(f, |c| c.increment(id, u64::from(v))),
            FieldOp::Clear(f) => self.update(f, |c| c.decrement(id, 1)),
            FieldOp::Drop(f) => self.remove(&f),
        }
    }
}

impl Model for OrMap<u8, MvRegister<u8>> {
    type Op = FieldOp;
    fn op() -> BoxedStrategy<FieldOp> {
        field_op()
    }
    fn apply(&mut self, id: ReplicaId, _: u64, op: &FieldOp) -> Self {
        match *op {
            FieldOp::Set(f, v) | FieldOp::Clear(f @ v) => self.update(f, |r| r.write(id, v)),
            FieldOp::Drop(f) => self.remove(&f),
        }
    }
}

/// A nested document: set and remove at paths up to three deep over a small alphabet, so that
/// writes at a path and at its ancestors or descendants collide often.
#[derive(Debug, Clone)]
pub(super) enum PathOp {
    Set(Vec<u8>, u8),
    Remove(Vec<u8>),
}

fn doc_path(p: &[u8]) -> Path {
    p.iter().fold(Path::new(), |path, &s| match s {
        0 => path.field("a"),
        1 => path.field("b"),
        _ => path.index(u64::from(s)),
    })
}

impl Model for Document<u8> {
    type Op = PathOp;
    fn op() -> BoxedStrategy<PathOp> {
        let path = proptest::collection::vec(0..3u8, 1..4);
        let any_path = proptest::collection::vec(0..3u8, 0..4);
        prop_oneof![
            3 => (path, any::<u8>()).prop_map(|(p, v)| PathOp::Set(p, v)),
            1 => any_path.prop_map(PathOp::Remove),
        ]
        .boxed()
    }
    fn apply(&mut self, id: ReplicaId, step: u64, op: &PathOp) -> Self {
        match op {
            PathOp::Set(p, v) => self.set(id, Timestamp::new(step, 0), &doc_path(p), *v),
            PathOp::Remove(p) => self.remove(&doc_path(p)),
        }
    }
}

laws_for!(aw_lww_map_laws, AwLwwMap<u8, u8>);
laws_for!(aw_lww_register_laws, AwLwwRegister<u8>);
laws_for!(counter_laws, Counter);
laws_for!(or_map_of_registers_laws, OrMap<u8, AwLwwRegister<u8>>);
laws_for!(or_map_of_counters_laws, OrMap<u8, Counter>);
laws_for!(or_map_of_mv_registers_laws, OrMap<u8, MvRegister<u8>>);
laws_for!(document_laws, Document<u8>);
laws_for!(or_set_laws, OrSet<u8>);
laws_for!(g_counter_laws, GCounter);
laws_for!(pn_counter_laws, PnCounter);
laws_for!(mv_register_laws, MvRegister<u8>);
laws_for!(lww_register_laws, LwwRegister<u8>);
laws_for!(ew_flag_laws, EwFlag);
laws_for!(or_map_of_sets_laws, OrMap<u8, OrSet<u8>>);
laws_for!(or_map_of_maps_laws, OrMap<u8, AwLwwMap<u8, u8>>);
