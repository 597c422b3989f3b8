use super::{CausalContext, Dot, DotStore, JoinScope};
use serde::{Deserialize, Deserializer, Serialize};

/// A set of dots: the store of flags and of set membership (an element is present while some
/// dot for it survives).
///
/// Kept as a sorted vector: these sets hold one dot, or a few after concurrent writes.
#[derive(Clone, Default, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DotSet {
    dots: Vec<Dot>,
}

impl DotSet {
    /// A set holding one dot.
    pub fn single(dot: Dot) -> Self {
        DotSet { dots: vec![dot] }
    }

    /// The dots, sorted.
    pub fn iter(&self) -> impl Iterator<Item = Dot> + '_ {
        self.dots.iter().copied()
    }

    /// True when the set holds no dot.
    pub fn is_empty(&self) -> bool {
        self.dots.is_empty()
    }

    /// How many dots.
    pub fn len(&self) -> usize {
        self.dots.len()
    }

    /// True when `dot` is in the set.
    pub fn contains(&self, dot: Dot) -> bool {
        self.dots.binary_search(&dot).is_ok()
    }
}

impl<'de> Deserialize<'de> for DotSet {
    /// Sorts and deduplicates: a peer's encoding is not trusted to be canonical.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut dots = Vec::<Dot>::deserialize(d)?;
        dots.sort_unstable();
        dots.dedup();
        Ok(DotSet { dots })
    }
}

impl DotStore for DotSet {
    fn is_empty(&self) -> bool {
        DotSet::is_empty(self)
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(Dot)) {
        self.dots.iter().for_each(|&d| f(d));
    }

    fn join(&mut self, ctx: &CausalContext, other: &Self, other_ctx: &CausalContext, _: JoinScope) {
        self.dots
            .retain(|&d| other.contains(d) || !other_ctx.contains(d));
        let before = self.dots.len();
        for &d in &other.dots {
            if !ctx.contains(d) && self.dots[..before].binary_search(&d).is_err() {
                self.dots.push(d);
            }
        }
        if self.dots.len() != before {
            self.dots.sort_unstable();
        }
    }

    fn restrict(&self, keep: &dyn Fn(Dot) -> bool, _: bool) -> Self {
        DotSet {
            dots: self.dots.iter().copied().filter(|&d| keep(d)).collect(),
        }
    }

    fn same(&self, other: &Self) -> bool {
        self == other
    }
}
