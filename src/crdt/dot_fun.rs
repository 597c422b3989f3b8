use super::{CausalContext, Dot, DotStore, JoinScope};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A map from dots to values: the store of registers. Each write adds its value under a fresh
/// dot and overwrites (removes) the dots it saw; concurrent writes leave several entries.
///
/// One entry is by far the common case, so it is stored inline: no allocation and no length
/// word for a key that was written once (this is what keeps [`AwLwwMap`](super::AwLwwMap)
/// compact).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DotFun<V> {
    entries: Entries<V>,
}

/// Invariant: `Many` is sorted by dot, has unique dots, and never holds exactly one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entries<V> {
    One(Dot, V),
    Many(Vec<(Dot, V)>),
}

impl<V> Default for DotFun<V> {
    fn default() -> Self {
        DotFun {
            entries: Entries::Many(Vec::new()),
        }
    }
}

impl<V> DotFun<V> {
    /// A store holding one value.
    pub fn single(dot: Dot, value: V) -> Self {
        DotFun {
            entries: Entries::One(dot, value),
        }
    }

    /// The entries, sorted by dot.
    pub fn iter(&self) -> impl Iterator<Item = (Dot, &V)> {
        let (one, many) = match &self.entries {
            Entries::One(d, v) => (Some((*d, v)), &[][..]),
            Entries::Many(vec) => (None, &vec[..]),
        };
        one.into_iter().chain(many.iter().map(|(d, v)| (*d, v)))
    }

    /// True when there is no entry.
    pub fn is_empty(&self) -> bool {
        matches!(&self.entries, Entries::Many(v) if v.is_empty())
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        match &self.entries {
            Entries::One(..) => 1,
            Entries::Many(vec) => vec.len(),
        }
    }

    /// The value written under `dot`.
    pub fn get(&self, dot: Dot) -> Option<&V> {
        match &self.entries {
            Entries::One(d, v) => (*d == dot).then_some(v),
            Entries::Many(vec) => vec
                .binary_search_by_key(&dot, |(d, _)| *d)
                .ok()
                .map(|i| &vec[i].1),
        }
    }

    /// True when `dot` has an entry.
    pub fn contains(&self, dot: Dot) -> bool {
        self.get(dot).is_some()
    }

    /// The entry that is greatest by `key`, e.g. the last writer.
    pub fn max_by_key<K: Ord>(&self, key: impl Fn(Dot, &V) -> K) -> Option<(Dot, &V)> {
        match &self.entries {
            Entries::One(d, v) => Some((*d, v)),
            Entries::Many(vec) => vec
                .iter()
                .max_by_key(|(d, v)| key(*d, v))
                .map(|(d, v)| (*d, v)),
        }
    }

    fn from_sorted(mut vec: Vec<(Dot, V)>) -> Self {
        let entries = match vec.len() {
            1 => match vec.pop() {
                Some((d, v)) => Entries::One(d, v),
                None => Entries::Many(vec),
            },
            _ => Entries::Many(vec),
        };
        DotFun { entries }
    }

    fn take_vec(&mut self) -> Vec<(Dot, V)> {
        match std::mem::replace(&mut self.entries, Entries::Many(Vec::new())) {
            Entries::One(d, v) => vec![(d, v)],
            Entries::Many(vec) => vec,
        }
    }
}

impl<V: Clone + PartialEq + std::fmt::Debug> DotStore for DotFun<V> {
    fn is_empty(&self) -> bool {
        DotFun::is_empty(self)
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(Dot)) {
        self.iter().for_each(|(d, _)| f(d));
    }

    fn join(&mut self, ctx: &CausalContext, other: &Self, other_ctx: &CausalContext, _: JoinScope) {
        // Fast path: both hold the same single write, the steady state of a converged map.
        if let (Entries::One(a, _), Entries::One(b, _)) = (&self.entries, &other.entries)
            && a == b
        {
            return;
        }
        let mut vec = self.take_vec();
        vec.retain(|(d, _)| other.contains(*d) || !other_ctx.contains(*d));
        let kept = vec.len();
        for (d, v) in other.iter() {
            if !ctx.contains(d) && vec[..kept].binary_search_by_key(&d, |(x, _)| *x).is_err() {
                vec.push((d, v.clone()));
            }
        }
        if vec.len() != kept {
            vec.sort_unstable_by_key(|(d, _)| *d);
        }
        *self = Self::from_sorted(vec);
    }

    fn restrict(&self, keep: &dyn Fn(Dot) -> bool, _: bool) -> Self {
        Self::from_sorted(
            self.iter()
                .filter(|(d, _)| keep(*d))
                .map(|(d, v)| (d, v.clone()))
                .collect(),
        )
    }

    fn same(&self, other: &Self) -> bool {
        self == other
    }
}

impl<V: Serialize> Serialize for DotFun<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for DotFun<V> {
    /// Refuses two values under one dot: that would be two different writes with one name.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut vec = Vec::<(Dot, V)>::deserialize(d)?;
        vec.sort_unstable_by_key(|(d, _)| *d);
        if vec.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(D::Error::custom("two entries under one dot"));
        }
        Ok(Self::from_sorted(vec))
    }
}
