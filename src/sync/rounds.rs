//! Which neighbours get a digest, and when: a bounded number per round, in rotation, with
//! rounds spaced out while nothing changes.
//!
//! Sending every neighbour a digest at every tick costs a converged, idle replica O(N) per
//! tick, and a cluster O(N²): at 32 nodes the idle cluster used most of two cores. Akka
//! Distributed Data, chitchat and Corrosion gossip with a few peers per round instead. Here a
//! round sends at most [`SyncConfig::digest_fanout`] digests, to the neighbours next in a
//! rotation (neighbours not compared since they were added go first), so every pair is
//! compared within ⌈N / fanout⌉ rounds. Rounds follow each other every
//! [`SyncConfig::digest_every_ticks`] while the replica's state changes or a neighbour shows
//! a difference; while neither happens, the interval doubles up to
//! [`SyncConfig::max_digest_interval_ticks`], and snaps back at the next sign of a difference
//! or a new neighbour. Writes do not wait for digests: deltas go to every neighbour at once,
//! acknowledged and resent; digests only find what the delta path could not deliver.
//!
//! [`SyncConfig::digest_fanout`]: super::SyncConfig::digest_fanout
//! [`SyncConfig::digest_every_ticks`]: super::SyncConfig::digest_every_ticks
//! [`SyncConfig::max_digest_interval_ticks`]: super::SyncConfig::max_digest_interval_ticks

use super::MapCrdt;
use super::message::Message;
use super::state::SyncState;
use crate::merkle::Digest;
use std::collections::BTreeSet;
use std::ops::Bound;

/// The digest schedule of one replica.
#[derive(Debug, Clone)]
pub(super) struct Rounds<P> {
    /// The neighbour last sent a digest: the rotation goes on after it.
    cursor: Option<P>,
    /// Neighbours added and not yet sent a digest: they go first.
    fresh: BTreeSet<P>,
    /// Ticks between rounds now.
    interval: u64,
    /// The tick of the next round.
    next_round: u64,
    /// Our Merkle root and context hash at the last round: unchanged means nothing landed.
    last_state: Option<(Digest, u64)>,
    /// Our context's size and hash, computed once per change (encoding a large context at
    /// every round cost more than the round).
    ctx_hash: Option<(u64, u64)>,
}

impl<P> Default for Rounds<P> {
    fn default() -> Self {
        Rounds {
            cursor: None,
            fresh: BTreeSet::new(),
            interval: 1,
            next_round: 0,
            last_state: None,
            ctx_hash: None,
        }
    }
}

impl<P> Rounds<P> {
    /// The tick of the next round.
    pub(super) fn next_round(&self) -> u64 {
        self.next_round
    }
}

impl<C: MapCrdt, P: Ord + Clone + std::fmt::Debug> SyncState<C, P> {
    /// At a tick: a round of digests if one is due.
    pub(super) fn digest_round(&mut self) {
        if self.tick < self.rounds.next_round {
            return;
        }
        let state = self.our_state();
        let active = self.config.digest_every_ticks.max(1);
        let idle_max = self.config.max_digest_interval_ticks.max(active);
        self.rounds.interval = if self.rounds.last_state == Some(state) {
            self.rounds
                .interval
                .saturating_mul(2)
                .clamp(active, idle_max)
        } else {
            active
        };
        self.rounds.last_state = Some(state);
        self.rounds.next_round = self.tick + self.rounds.interval;
        for peer in self.digest_targets() {
            self.send_digest(&peer, state);
        }
    }

    /// What a digest says of us: the Merkle root and the context's hash.
    pub(super) fn our_state(&mut self) -> (Digest, u64) {
        (self.tree.root(), self.context_hash())
    }

    pub(super) fn send_digest(&mut self, peer: &P, (root, ctx_hash): (Digest, u64)) {
        self.send(peer, &Message::Digest { root, ctx_hash });
    }

    /// Up to `digest_fanout` neighbours that may be sent a digest now (nothing in flight to
    /// them, no repair landing there): fresh ones first, then the rotation. Moves the cursor.
    fn digest_targets(&mut self) -> Vec<P> {
        let fanout = self.config.digest_fanout.max(1);
        let head = self.head;
        let mut targets: Vec<P> = self
            .rounds
            .fresh
            .iter()
            .filter(|p| {
                self.neighbours
                    .get(*p)
                    .is_some_and(|n| n.may_get_digest(head))
            })
            .take(fanout)
            .cloned()
            .collect();
        for p in &targets {
            self.rounds.fresh.remove(p);
        }
        // The rotation, from after the cursor round to it.
        let rotation: Box<dyn Iterator<Item = (&P, &super::state::Neighbour)>> =
            match &self.rounds.cursor {
                Some(c) => Box::new(
                    self.neighbours
                        .range::<P, _>((Bound::Excluded(c), Bound::Unbounded))
                        .chain(
                            self.neighbours
                                .range::<P, _>((Bound::Unbounded, Bound::Included(c))),
                        ),
                ),
                None => Box::new(self.neighbours.iter()),
            };
        let mut examined = None;
        for (p, n) in rotation {
            if targets.len() >= fanout {
                break;
            }
            examined = Some(p);
            if n.may_get_digest(head) && !targets.contains(p) {
                targets.push(p.clone());
            }
        }
        if let Some(p) = examined.cloned() {
            self.rounds.cursor = Some(p);
        }
        targets
    }

    /// A sign that a neighbour differs (it sent a context, a repair, a descent step, or a
    /// digest unlike ours): rounds come at the active interval again, the next one now.
    pub(super) fn wake_rounds(&mut self) {
        let active = self.config.digest_every_ticks.max(1);
        self.rounds.interval = active;
        self.rounds.next_round = self.rounds.next_round.min(self.tick + 1);
    }

    /// Neighbours just added: compared first, and soon.
    pub(super) fn add_fresh<I: IntoIterator<Item = P>>(&mut self, added: I) {
        let before = self.rounds.fresh.len();
        self.rounds.fresh.extend(added);
        if self.rounds.fresh.len() > before {
            self.wake_rounds();
        }
    }

    /// Forgets neighbours that are gone.
    pub(super) fn forget_gone(&mut self) {
        let neighbours = &self.neighbours;
        self.rounds.fresh.retain(|p| neighbours.contains_key(p));
    }

    /// A hash of our causal context, cached while the context does not grow (a context only
    /// grows, so an equal number of dots is the same context).
    pub(super) fn context_hash(&mut self) -> u64 {
        let dots = self.crdt.as_causal().context().dot_count();
        match self.rounds.ctx_hash {
            Some((n, hash)) if n == dots => hash,
            _ => {
                let hash = super::keys::context_hash(self.crdt.as_causal().context());
                self.rounds.ctx_hash = Some((dots, hash));
                hash
            }
        }
    }
}
