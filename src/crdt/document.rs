//! Nested documents: maps of maps and registers whose fields merge one by one.

use super::aw_lww_map::Lww;
use super::aw_lww_register::winner;
use super::causal::causal_newtype;
use super::{
    Causal, CausalContext, Crdt, Dot, DotFun, DotMap, DotStore, Embeddable, JoinScope, ReplicaId,
};
use crate::clock::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One step of a [`Path`]: a field name, or a position in a sequence.
///
/// The two kinds mirror serde's data model (struct fields and map keys, sequence elements), so
/// a serde value can be flattened into one path per leaf.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Segment {
    /// A named field (a struct field or a map key).
    Field(String),
    /// A position in a sequence.
    Index(u64),
}

impl From<&str> for Segment {
    fn from(name: &str) -> Self {
        Segment::Field(name.to_owned())
    }
}

impl From<String> for Segment {
    fn from(name: String) -> Self {
        Segment::Field(name)
    }
}

impl From<u64> for Segment {
    fn from(index: u64) -> Self {
        Segment::Index(index)
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Segment::Field(name) => f.write_str(name),
            Segment::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// Where a value sits in a [`Document`]: the segments from the root to it.
///
/// `Path::from("server.port")` splits on `.` into field names; build other paths with
/// [`field`](Self::field) and [`index`](Self::index).
///
/// ```
/// use herd::crdt::{Path, Segment};
/// let p = Path::from("servers").index(0).field("port");
/// assert_eq!(p.segments(), &[
///     Segment::Field("servers".into()),
///     Segment::Index(0),
///     Segment::Field("port".into()),
/// ]);
/// assert_eq!(p.to_string(), "servers[0].port");
/// assert_eq!(Path::from("a.b"), Path::new().field("a").field("b"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Path(Vec<Segment>);

impl Path {
    /// The root: no segment.
    pub fn new() -> Self {
        Path(Vec::new())
    }

    /// This path followed by field `name`.
    #[must_use]
    pub fn field(mut self, name: impl Into<String>) -> Self {
        self.0.push(Segment::Field(name.into()));
        self
    }

    /// This path followed by sequence position `index`.
    #[must_use]
    pub fn index(mut self, index: u64) -> Self {
        self.0.push(Segment::Index(index));
        self
    }

    /// This path followed by `segment`.
    #[must_use]
    pub fn child(mut self, segment: Segment) -> Self {
        self.0.push(segment);
        self
    }

    /// The segments, from the root.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// True for the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Path {
    fn from(dotted: &str) -> Self {
        Path(dotted.split('.').map(Segment::from).collect())
    }
}

impl From<Vec<Segment>> for Path {
    fn from(segments: Vec<Segment>) -> Self {
        Path(segments)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Segment::Field(_) if i > 0 => write!(f, ".{s}")?,
                _ => write!(f, "{s}")?,
            }
        }
        Ok(())
    }
}

/// The dot store under one field of a [`Document`]: a register (the field's value, when it is
/// a leaf) and the fields below it (when it is an object). After concurrent writes of both
/// shapes a node may hold both; the next write to it removes what it had seen of the other.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound(
    serialize = "V: Serialize + Clone + PartialEq + fmt::Debug",
    deserialize = "V: Deserialize<'de> + Clone + PartialEq + fmt::Debug"
))]
pub struct Node<V> {
    value: DotFun<Lww<V>>,
    fields: DotMap<Segment, Node<V>>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node {
            value: DotFun::default(),
            fields: DotMap::default(),
        }
    }
}

impl<V: Clone + PartialEq + fmt::Debug> Node<V> {
    /// The winning value of this node's register, if it holds one.
    pub fn value(&self) -> Option<&V> {
        winner(&self.value).map(|(_, e)| &e.value)
    }

    /// The node under `segment`.
    pub fn field(&self, segment: &Segment) -> Option<&Node<V>> {
        self.fields.get(segment).filter(|n| !n.is_empty())
    }

    /// Calls `f` with the path and winning value of every leaf at or under this node, whose
    /// path is `at`.
    pub fn for_each_leaf<'a>(
        &'a self,
        at: &mut Vec<Segment>,
        f: &mut dyn FnMut(&[Segment], &'a V),
    ) {
        if let Some(v) = self.value() {
            f(at, v);
        }
        for (segment, node) in self.fields.iter() {
            at.push(segment.clone());
            node.for_each_leaf(at, f);
            at.pop();
        }
    }

    /// The greatest timestamp stored at or under this node.
    pub fn max_timestamp(&self) -> Option<Timestamp> {
        let here = self.value.iter().map(|(_, e)| e.ts).max();
        self.fields
            .iter()
            .filter_map(|(_, n)| n.max_timestamp())
            .fold(here, |a, b| a.max(Some(b)))
    }

    /// A chain of nodes down `path` ending in `leaf`.
    fn chain(path: &[Segment], leaf: Node<V>) -> Node<V> {
        path.iter().rev().fold(leaf, |child, segment| Node {
            value: DotFun::default(),
            fields: DotMap::single(segment.clone(), child),
        })
    }
}

impl<V: Clone + PartialEq + fmt::Debug> DotStore for Node<V> {
    fn is_empty(&self) -> bool {
        self.value.is_empty() && self.fields.is_empty()
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(Dot)) {
        self.value.for_each_dot(f);
        self.fields.for_each_dot(f);
    }

    fn join(
        &mut self,
        ctx: &CausalContext,
        other: &Self,
        other_ctx: &CausalContext,
        _scope: JoinScope,
    ) {
        self.value
            .join(ctx, &other.value, other_ctx, JoinScope::NESTED);
        self.fields
            .join(ctx, &other.fields, other_ctx, JoinScope::NESTED);
    }

    fn restrict(&self, keep: &dyn Fn(Dot) -> bool, _keep_keys: bool) -> Self {
        Node {
            value: self.value.restrict(keep, false),
            fields: self.fields.restrict(keep, false),
        }
    }

    fn same(&self, other: &Self) -> bool {
        self.value.same(&other.value) && self.fields.same(&other.fields)
    }
}

/// A nested document: fields holding values or further fields, each leaf a causal
/// last-writer-wins register ([`AwLwwRegister`](super::AwLwwRegister)'s rules), so that
/// concurrent edits of different fields all survive and a change ships only the field it
/// touched.
///
/// * [`set`](Self::set) writes the leaf at a path; it replaces what it has seen at that path
///   (a value, or fields below it) and the values it has seen at the path's ancestors (an
///   ancestor that was a leaf becomes an object).
/// * [`remove`](Self::remove) removes what it has seen at and under a path: a removed field
///   stays removed, unless a write concurrent with the remove re-adds it (add wins).
/// * Concurrent writes of one leaf: the greatest `(timestamp, replica)` wins, on every replica.
///
/// # Examples
/// ```
/// use herd::clock::Timestamp;
/// use herd::crdt::{Crdt, Document, Path, ReplicaId};
///
/// let (a_id, b_id) = (ReplicaId::new(1), ReplicaId::new(2));
/// let mut a: Document<u32> = Document::new();
/// a.set(a_id, Timestamp::new(1, 0), &Path::from("server.port"), 80);
/// let mut b = a.clone();
/// // Concurrent edits of two fields of one object: both survive.
/// let da = a.set(a_id, Timestamp::new(2, 0), &Path::from("server.port"), 8080);
/// let db = b.set(b_id, Timestamp::new(2, 0), &Path::from("server.workers"), 4);
/// a.join(&db);
/// b.join(&da);
/// assert_eq!(a, b);
/// assert_eq!(a.get(&Path::from("server.port")), Some(&8080));
/// assert_eq!(a.get(&Path::from("server.workers")), Some(&4));
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound(
    serialize = "V: Serialize + Clone + PartialEq + fmt::Debug",
    deserialize = "V: Deserialize<'de> + Clone + PartialEq + fmt::Debug"
))]
#[serde(transparent)]
pub struct Document<V> {
    inner: Causal<DotMap<Segment, Node<V>>>,
}

impl<V> Default for Document<V> {
    fn default() -> Self {
        Document {
            inner: Causal {
                store: DotMap::default(),
                ctx: CausalContext::new(),
                keyed: false,
            },
        }
    }
}

causal_newtype!(Document [V] [V] store = DotMap<Segment, Node<V>>;
    where V: Clone + PartialEq + fmt::Debug);

impl<V: Clone + PartialEq + fmt::Debug> Document<V> {
    /// An empty document.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the leaf at `path` to `value`, stamped `ts` by `replica`; returns the delta. The
    /// root holds no value: an empty path changes nothing.
    pub fn set(&mut self, replica: ReplicaId, ts: Timestamp, path: &Path, value: V) -> Self {
        let Some((first, rest)) = path.segments().split_first() else {
            return Self::from_causal(Causal::empty_delta());
        };
        let mut seen = CausalContext::new();
        let mut node = self.inner.store.get(first);
        for segment in rest {
            let Some(n) = node else { break };
            n.value.for_each_dot(&mut |d| seen.insert(d));
            node = n.fields.get(segment);
        }
        if let Some(n) = node {
            n.for_each_dot(&mut |d| seen.insert(d));
        }
        let dot = self.inner.ctx.next_dot(replica);
        seen.insert(dot);
        let leaf = Node {
            value: DotFun::single(dot, Lww { ts, value }),
            fields: DotMap::default(),
        };
        self.apply(first, rest, leaf, seen)
    }

    /// Removes what was seen at and under `path`; returns the delta (empty when nothing is
    /// there). Removing the root removes every field.
    pub fn remove(&mut self, path: &Path) -> Self {
        let Some((first, rest)) = path.segments().split_first() else {
            let mut delta = Self::from_causal(Causal::empty_delta());
            let fields: Vec<Segment> = self.inner.store.present_keys().cloned().collect();
            for field in fields {
                let part = self.remove(&Path(vec![field]));
                delta.inner.join(&part.inner);
            }
            return delta;
        };
        let mut seen = CausalContext::new();
        if let Some(node) = self.node(path) {
            node.for_each_dot(&mut |d| seen.insert(d));
        }
        if seen.is_empty() {
            return Self::from_causal(Causal::empty_delta());
        }
        self.apply(first, rest, Node::default(), seen)
    }

    /// The winning value of the leaf at `path`.
    pub fn get(&self, path: &Path) -> Option<&V> {
        self.node(path)?.value()
    }

    /// The node at `path`, if anything is there.
    pub fn node(&self, path: &Path) -> Option<&Node<V>> {
        let (first, rest) = path.segments().split_first()?;
        let mut node = self.inner.store.get(first).filter(|n| !n.is_empty())?;
        for segment in rest {
            node = node.field(segment)?;
        }
        Some(node)
    }

    /// Every leaf with its path and winning value, in no particular order.
    pub fn leaves(&self) -> Vec<(Path, &V)> {
        let mut out = Vec::new();
        let mut at = Vec::new();
        for (segment, node) in self.inner.store.iter() {
            at.push(segment.clone());
            node.for_each_leaf(&mut at, &mut |p, v| out.push((Path(p.to_vec()), v)));
            at.pop();
        }
        out
    }

    /// The top-level fields present.
    pub fn fields(&self) -> impl Iterator<Item = &Segment> {
        self.inner.store.present_keys()
    }

    /// The greatest timestamp stored, to resume a [`Hlc`](crate::clock::Hlc) after a restart.
    pub fn max_timestamp(&self) -> Option<Timestamp> {
        self.inner
            .store
            .iter()
            .filter_map(|(_, n)| n.max_timestamp())
            .max()
    }

    fn apply(
        &mut self,
        first: &Segment,
        rest: &[Segment],
        leaf: Node<V>,
        seen: CausalContext,
    ) -> Self {
        let delta = Causal::keyed(DotMap::single(first.clone(), Node::chain(rest, leaf)), seen);
        self.inner.join(&delta);
        Document { inner: delta }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(n: u64) -> Timestamp {
        Timestamp::new(n, 0)
    }

    #[test]
    fn a_removed_field_stays_removed_unless_a_concurrent_write_re_adds_it() {
        let (a_id, b_id) = (ReplicaId::new(1), ReplicaId::new(2));
        let port = Path::from("server.port");
        let mut a: Document<u32> = Document::new();
        a.set(a_id, ts(1), &port, 80);
        let mut b = a.clone();
        // A remove that saw the write wins over the old value, everywhere.
        let removed = a.remove(&Path::from("server"));
        b.join(&removed);
        assert_eq!(b.get(&port), None);
        assert!(b.leaves().is_empty());
        // A write concurrent with a remove survives it (add wins).
        let mut c = a.clone();
        let written = c.set(b_id, ts(2), &port, 81);
        let removed_again = a.remove(&Path::from("server"));
        a.join(&written);
        c.join(&removed_again);
        assert_eq!(a, c);
        assert_eq!(a.get(&port), Some(&81));
    }

    #[test]
    fn a_write_replaces_what_it_saw_at_its_path_and_ancestors() {
        let id = ReplicaId::new(1);
        let mut d: Document<u32> = Document::new();
        d.set(id, ts(1), &Path::from("a.b"), 1);
        d.set(id, ts(2), &Path::from("a.c"), 2);
        // "a" becomes a leaf: its fields go.
        d.set(id, ts(3), &Path::from("a"), 3);
        assert_eq!(d.leaves(), vec![(Path::from("a"), &3)]);
        // And back to an object: the leaf value goes.
        d.set(id, ts(4), &Path::from("a.x"), 4);
        assert_eq!(d.leaves(), vec![(Path::from("a.x"), &4)]);
        assert_eq!(d.max_timestamp(), Some(ts(4)));
    }

    #[test]
    fn a_field_change_ships_only_that_field() {
        let id = ReplicaId::new(1);
        let mut d: Document<String> = Document::new();
        for i in 0..50 {
            d.set(
                id,
                ts(i),
                &Path::new().field(format!("field_{i:02}")),
                "x".repeat(16),
            );
        }
        let whole = crate::codec::encode(&d, usize::MAX).unwrap().len();
        let delta = d.set(id, ts(99), &Path::from("field_07"), "y".repeat(16));
        let delta_len = crate::codec::encode(&delta, usize::MAX).unwrap().len();
        assert!(whole > 1000, "the document is ~1 KB: {whole}");
        assert!(
            delta_len < 80,
            "the delta is about one field: {delta_len} bytes"
        );
    }
}
