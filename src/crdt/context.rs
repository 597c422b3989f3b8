use super::{Dot, ReplicaId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use thiserror::Error;

/// The set of dots a replica has seen: the writes whose effect (present, overwritten or
/// removed) is already reflected in its state.
///
/// Stored compactly as a version vector (per replica, every counter up to `n` was seen) plus a
/// *dot cloud* of dots seen out of order. Inserting the dot that fills a gap folds the cloud back
/// into the vector, so once a replica has seen everything its context is a plain version vector:
/// O(number of replicas), however many keys were written and removed.
///
/// # Examples
/// ```
/// use herd::crdt::{CausalContext, Dot, ReplicaId};
/// let r = ReplicaId::new(1);
/// let mut ctx = CausalContext::new();
/// ctx.insert(Dot::new(r, 2)); // out of order: kept in the cloud
/// assert!(!ctx.is_version_vector());
/// ctx.insert(Dot::new(r, 1)); // fills the gap: folded into the vector
/// assert!(ctx.is_version_vector());
/// assert!(ctx.contains(Dot::new(r, 2)));
/// assert_eq!(ctx.max_counter(r), 2);
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawContext", into = "RawContext")]
pub struct CausalContext {
    /// Sorted by replica; every counter is at least 1 (a replica with nothing seen is absent).
    vv: Vec<(ReplicaId, u64)>,
    /// Dots above their replica's vector entry + 1, i.e. never one the vector covers or would
    /// absorb.
    cloud: BTreeSet<Dot>,
}

/// The wire form of a context, validated on decode: a peer can send anything. The cloud is
/// sent as runs `(first counter, length)` per replica: the dots of a delta group are mostly
/// consecutive, and a replica id (64 random bits) is then written once, not per dot.
#[derive(Serialize, Deserialize)]
struct RawContext {
    vv: Vec<(ReplicaId, u64)>,
    cloud: Vec<(ReplicaId, Vec<(u64, u64)>)>,
}

/// Most dots a decoded cloud may expand to: a run's length comes from the peer, and the
/// cloud is a set of individual dots in memory.
const MAX_CLOUD_DOTS: u64 = 1 << 24;

/// A decoded causal context broke an invariant. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ContextError {
    /// The version vector named a replica twice or was not sorted.
    #[error("version vector entries are not strictly sorted by replica")]
    UnsortedVector,
    /// A dot with counter 0, which no write ever has.
    #[error("dot counter 0 in a causal context")]
    ZeroCounter,
    /// The cloud's runs add up to more dots than a context may hold out of order.
    #[error("dot cloud too large")]
    CloudTooLarge,
}

impl TryFrom<RawContext> for CausalContext {
    type Error = ContextError;
    fn try_from(raw: RawContext) -> Result<Self, ContextError> {
        if raw.vv.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(ContextError::UnsortedVector);
        }
        let mut total = 0u64;
        for (_, runs) in &raw.cloud {
            for &(first, len) in runs {
                if first == 0 {
                    return Err(ContextError::ZeroCounter);
                }
                total = total.saturating_add(len);
            }
        }
        if total > MAX_CLOUD_DOTS {
            return Err(ContextError::CloudTooLarge);
        }
        let mut ctx = CausalContext {
            vv: raw.vv.into_iter().filter(|&(_, n)| n > 0).collect(),
            cloud: BTreeSet::new(),
        };
        for (replica, runs) in raw.cloud {
            for (first, len) in runs {
                let last = first.saturating_add(len.saturating_sub(1));
                for counter in first..=last {
                    if len > 0 {
                        ctx.insert(Dot::new(replica, counter));
                    }
                }
            }
        }
        Ok(ctx)
    }
}

impl From<CausalContext> for RawContext {
    fn from(ctx: CausalContext) -> Self {
        let mut cloud: Vec<(ReplicaId, Vec<(u64, u64)>)> = Vec::new();
        for dot in ctx.cloud {
            match cloud.last_mut() {
                Some((r, runs)) if *r == dot.replica => match runs.last_mut() {
                    Some((first, len)) if *first + *len == dot.counter => *len += 1,
                    _ => runs.push((dot.counter, 1)),
                },
                _ => cloud.push((dot.replica, vec![(dot.counter, 1)])),
            }
        }
        RawContext { vv: ctx.vv, cloud }
    }
}

impl CausalContext {
    /// The empty context: nothing seen.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when nothing was seen.
    pub fn is_empty(&self) -> bool {
        self.vv.is_empty() && self.cloud.is_empty()
    }

    /// True when the context is a plain version vector (no dot seen out of order).
    pub fn is_version_vector(&self) -> bool {
        self.cloud.is_empty()
    }

    /// The version-vector part: `(replica, n)` means dots 1..=n of that replica were seen.
    pub fn vector(&self) -> &[(ReplicaId, u64)] {
        &self.vv
    }

    /// Dots seen out of order, beyond the version vector.
    pub fn cloud(&self) -> impl Iterator<Item = Dot> + '_ {
        self.cloud.iter().copied()
    }

    /// How many dots the context holds.
    pub fn dot_count(&self) -> u64 {
        self.vv.iter().map(|&(_, n)| n).sum::<u64>() + self.cloud.len() as u64
    }

    fn vv_get(&self, replica: ReplicaId) -> u64 {
        match self.vv.binary_search_by_key(&replica, |&(r, _)| r) {
            Ok(i) => self.vv[i].1,
            Err(_) => 0,
        }
    }

    /// The highest counter `n` of `replica` such that dots `1..=n` were all seen.
    pub fn contiguous(&self, replica: ReplicaId) -> u64 {
        self.vv_get(replica)
    }

    /// The version-vector part alone (the cloud dropped): a subset, compact to send.
    pub fn vector_only(&self) -> CausalContext {
        CausalContext {
            vv: self.vv.clone(),
            cloud: BTreeSet::new(),
        }
    }

    /// True when `dot` was seen.
    #[inline]
    pub fn contains(&self, dot: Dot) -> bool {
        dot.counter <= self.vv_get(dot.replica)
            || (!self.cloud.is_empty() && self.cloud.contains(&dot))
    }

    /// The highest counter of `replica` seen, 0 if none.
    pub fn max_counter(&self, replica: ReplicaId) -> u64 {
        let in_cloud = self
            .cloud
            .range(Dot::new(replica, 0)..=Dot::new(replica, u64::MAX))
            .next_back()
            .map_or(0, |d| d.counter);
        self.vv_get(replica).max(in_cloud)
    }

    /// The dot for `replica`'s next write: one past the highest counter it has issued.
    pub fn next_dot(&self, replica: ReplicaId) -> Dot {
        Dot::new(replica, self.max_counter(replica).saturating_add(1))
    }

    /// Records `dot` as seen, folding the cloud into the vector when it closes a gap.
    pub fn insert(&mut self, dot: Dot) {
        if dot.counter == 0 {
            return;
        }
        let i = match self.vv.binary_search_by_key(&dot.replica, |&(r, _)| r) {
            Ok(i) => i,
            Err(i) => {
                if dot.counter > 1 {
                    self.cloud.insert(dot);
                    return;
                }
                self.vv.insert(i, (dot.replica, 0));
                i
            }
        };
        let n = &mut self.vv[i].1;
        if dot.counter <= *n {
            return;
        }
        if dot.counter > *n + 1 {
            self.cloud.insert(dot);
            return;
        }
        *n = dot.counter;
        if !self.cloud.is_empty() {
            Self::absorb(&mut self.cloud, dot.replica, n);
        }
    }

    /// Moves the cloud's dots that continue `replica`'s contiguous run into the vector.
    fn absorb(cloud: &mut BTreeSet<Dot>, replica: ReplicaId, n: &mut u64) {
        while cloud.remove(&Dot::new(replica, *n + 1)) {
            *n += 1;
        }
    }

    /// Records dots `from..=to` of `replica` as seen, in O(1) when the range continues the
    /// version vector. A range that would leave a gap is ignored and `false` returned: not
    /// recording a dot is always safe (it may only cost a repeated transfer later), while
    /// expanding a huge range into the cloud could exhaust memory on a peer's say-so.
    pub fn insert_range(&mut self, replica: ReplicaId, from: u64, to: u64) -> bool {
        if from == 0 || to < from {
            return to < from;
        }
        let i = match self.vv.binary_search_by_key(&replica, |&(r, _)| r) {
            Ok(i) => i,
            Err(i) if from == 1 => {
                self.vv.insert(i, (replica, 0));
                i
            }
            Err(_) => return false,
        };
        let n = &mut self.vv[i].1;
        if from > *n + 1 {
            return false;
        }
        if to > *n {
            *n = to;
            let n = *n;
            // Cloud dots the range now covers are redundant; then absorb what follows.
            let covered: Vec<Dot> = self
                .cloud
                .range(Dot::new(replica, 0)..=Dot::new(replica, n))
                .copied()
                .collect();
            for d in covered {
                self.cloud.remove(&d);
            }
            Self::absorb(&mut self.cloud, replica, &mut self.vv[i].1);
        }
        true
    }

    /// Adds everything `other` has seen.
    pub fn union(&mut self, other: &CausalContext) {
        if other.vv.iter().all(|&(r, n)| self.vv_get(r) >= n) {
            // The common case for a small delta: only its cloud is new.
            for &dot in &other.cloud {
                self.insert(dot);
            }
            return;
        }
        let mut merged = Vec::with_capacity(self.vv.len() + other.vv.len());
        let (mut a, mut b) = (self.vv.iter().peekable(), other.vv.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&&(ra, na)), Some(&&(rb, nb))) if ra == rb => {
                    a.next();
                    b.next();
                    (ra, na.max(nb))
                }
                (Some(&&x), Some(&&y)) if x.0 < y.0 => {
                    a.next();
                    x
                }
                (Some(_), Some(&&y)) => {
                    b.next();
                    y
                }
                (Some(&&x), None) => {
                    a.next();
                    x
                }
                (None, Some(&&y)) => {
                    b.next();
                    y
                }
                (None, None) => break,
            };
            merged.push(next);
        }
        self.vv = merged;
        // Drop cloud dots the new vector covers, then fold in the rest (ours and theirs).
        let old_cloud = std::mem::take(&mut self.cloud);
        for dot in old_cloud.into_iter().chain(other.cloud.iter().copied()) {
            self.insert(dot);
        }
    }

    /// Every dot seen, in order. Can be long: meant for decomposition and tests.
    pub fn dots(&self) -> impl Iterator<Item = Dot> + '_ {
        self.vv
            .iter()
            .flat_map(|&(r, n)| (1..=n).map(move |c| Dot::new(r, c)))
            .chain(self.cloud.iter().copied())
    }

    /// The dots `self` has seen and `other` has not.
    pub fn difference(&self, other: &CausalContext) -> CausalContext {
        let mut out = CausalContext::new();
        for &(r, n) in &self.vv {
            for c in other.vv_get(r) + 1..=n {
                let dot = Dot::new(r, c);
                if !other.contains(dot) {
                    out.insert(dot);
                }
            }
        }
        for &dot in &self.cloud {
            if !other.contains(dot) {
                out.insert(dot);
            }
        }
        out
    }

    /// The context without those of `held` that it can drop at no cost in size: the top of a
    /// vector entry while it is held, and whole runs of the cloud that are held. A receiver
    /// that knows `held` (the dots of the store travelling with the context) adds them back;
    /// a single write's delta then carries its dot once, in the store, instead of twice.
    pub(crate) fn without_held(&self, held: &std::collections::HashSet<Dot>) -> CausalContext {
        let mut vv = Vec::with_capacity(self.vv.len());
        for &(r, n) in &self.vv {
            let mut top = n;
            while top > 0 && held.contains(&Dot::new(r, top)) {
                top -= 1;
            }
            if top > 0 {
                vv.push((r, top));
            }
        }
        let mut cloud = BTreeSet::new();
        let mut run: Vec<Dot> = Vec::new();
        let flush = |run: &mut Vec<Dot>, cloud: &mut BTreeSet<Dot>| {
            if !run.iter().all(|d| held.contains(d)) {
                cloud.extend(run.iter().copied());
            }
            run.clear();
        };
        for &dot in &self.cloud {
            let continues = run
                .last()
                .is_some_and(|l| l.replica == dot.replica && l.counter + 1 == dot.counter);
            if !continues {
                flush(&mut run, &mut cloud);
            }
            run.push(dot);
        }
        flush(&mut run, &mut cloud);
        CausalContext { vv, cloud }
    }

    /// True when every dot of `self` is in `other`.
    pub fn is_subset(&self, other: &CausalContext) -> bool {
        self.vv.iter().all(|&(r, n)| {
            other.vv_get(r) >= n
                || (other.vv_get(r) + 1..=n).all(|c| other.contains(Dot::new(r, c)))
        }) && self.cloud.iter().all(|&d| other.contains(d))
    }
}

impl std::fmt::Debug for CausalContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CausalContext")
            .field("vv", &self.vv)
            .field("cloud", &self.cloud)
            .finish()
    }
}

impl FromIterator<Dot> for CausalContext {
    fn from_iter<I: IntoIterator<Item = Dot>>(iter: I) -> Self {
        let mut ctx = CausalContext::new();
        for dot in iter {
            ctx.insert(dot);
        }
        ctx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn dots() -> impl Strategy<Value = Vec<Dot>> {
        proptest::collection::vec(
            (0u64..3, 1u64..12).prop_map(|(r, c)| Dot::new(ReplicaId::new(r), c)),
            0..24,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The compact form holds exactly the inserted set, and is canonical: equal sets give
        /// equal (==) contexts whatever the insertion order.
        #[test]
        fn behaves_like_a_set(a in dots(), b in dots()) {
            let set: BTreeSet<Dot> = a.iter().chain(&b).copied().collect();
            let mut ctx: CausalContext = a.iter().copied().collect();
            let other: CausalContext = b.iter().copied().collect();
            ctx.union(&other);
            prop_assert_eq!(ctx.dots().collect::<BTreeSet<_>>(), set.clone());
            let sorted: CausalContext = set.iter().copied().collect();
            prop_assert_eq!(&ctx, &sorted);
            for r in 0..3 {
                let r = ReplicaId::new(r);
                let max = set.iter().filter(|d| d.replica == r).map(|d| d.counter).max().unwrap_or(0);
                prop_assert_eq!(ctx.max_counter(r), max);
            }
            let diff = ctx.difference(&other);
            let expect: BTreeSet<Dot> = set.iter().filter(|d| !b.contains(d)).copied().collect();
            prop_assert_eq!(diff.dots().collect::<BTreeSet<_>>(), expect);
            prop_assert!(other.is_subset(&ctx));
            // The wire form (runs per replica) gives back the same context.
            let bytes = crate::codec::encode(&ctx, 1 << 20).expect("encodes");
            let back: CausalContext = crate::codec::decode(&bytes, 1 << 20).expect("decodes");
            prop_assert_eq!(back, ctx);
        }

        /// Leaving held dots out never grows the encoding, and adding them back gives the
        /// context again (what a delta's receiver does).
        #[test]
        fn without_held_is_smaller_and_reversible(all in dots(), pick in proptest::collection::vec(any::<bool>(), 24)) {
            let ctx: CausalContext = all.iter().copied().collect();
            let held: std::collections::HashSet<Dot> = all
                .iter()
                .zip(pick.iter().cycle())
                .filter(|(_, keep)| **keep)
                .map(|(d, _)| *d)
                .collect();
            let mut stripped = ctx.without_held(&held);
            let size = |c: &CausalContext| crate::codec::encoded_len(c).expect("encodes");
            prop_assert!(size(&stripped) <= size(&ctx));
            for &d in &held {
                stripped.insert(d);
            }
            prop_assert_eq!(stripped, ctx);
        }
    }

    #[test]
    fn a_single_write_needs_no_context_on_the_wire() {
        let dot = Dot::new(ReplicaId::new(0x9c3f_11a2_7d04_e6b1), 40);
        let removed = Dot::new(ReplicaId::new(0xbeef), 7);
        let ctx: CausalContext = [dot, removed].into_iter().collect();
        let stripped = ctx.without_held(&[dot].into_iter().collect());
        assert_eq!(stripped.dots().collect::<Vec<_>>(), [removed]);
        let fresh: CausalContext = [Dot::new(ReplicaId::new(3), 1)].into_iter().collect();
        assert!(fresh.without_held(&fresh.dots().collect()).is_empty());
    }

    #[test]
    fn ranges_extend_the_vector_or_are_refused() {
        let r = ReplicaId::new(4);
        let mut ctx = CausalContext::new();
        assert!(!ctx.insert_range(r, 3, 9), "a gap is refused");
        assert!(ctx.is_empty());
        ctx.insert(Dot::new(r, 12));
        assert!(ctx.insert_range(r, 1, 10));
        assert_eq!(ctx.max_counter(r), 12);
        assert!(!ctx.contains(Dot::new(r, 11)));
        assert!(ctx.insert_range(r, 11, 11));
        assert!(ctx.is_version_vector(), "the cloud dot was absorbed");
        assert_eq!(ctx.vector(), &[(r, 12)]);
    }

    #[test]
    fn rejects_unsorted_vectors_and_zero_counters() {
        let r = |n| ReplicaId::new(n);
        let bad = RawContext {
            vv: vec![(r(2), 1), (r(1), 1)],
            cloud: vec![],
        };
        assert_eq!(
            CausalContext::try_from(bad),
            Err(ContextError::UnsortedVector)
        );
        let bad = RawContext {
            vv: vec![],
            cloud: vec![(r(1), vec![(0, 1)])],
        };
        assert_eq!(CausalContext::try_from(bad), Err(ContextError::ZeroCounter));
        let huge = RawContext {
            vv: vec![],
            cloud: vec![(r(1), vec![(5, u64::MAX)])],
        };
        assert_eq!(
            CausalContext::try_from(huge),
            Err(ContextError::CloudTooLarge)
        );
        // A cloud dot the vector covers is normalised away, not trusted.
        let raw = RawContext {
            vv: vec![(r(1), 5)],
            cloud: vec![(r(1), vec![(3, 1), (6, 1)])],
        };
        let ctx = CausalContext::try_from(raw).unwrap();
        assert!(ctx.is_version_vector());
        assert_eq!(ctx.max_counter(r(1)), 6);
    }
}
