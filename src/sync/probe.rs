//! Read probes: "what do you hold?" asked of every neighbour, for reads that must include the
//! neighbours' state (Akka's `ReadMajority` / `ReadAll`).
//!
//! A probe is one small request; each neighbour answers with its causal context as it is when
//! the request arrives. The answer shows what that neighbour held *after* the read began, so a
//! write it acknowledged before the read began is covered. A neighbour's state is included here
//! once this replica's context contains the answered one: every dot it had seen, this replica
//! has seen too (held, or seen removed). The normal repair path closes any gap, so waiting for
//! "included" needs nothing more than the answers.

use super::MapCrdt;
use super::message::Message;
use super::state::SyncState;
use crate::crdt::CausalContext;

/// The newest answer of one neighbour: the probe it answered and the context it held.
#[derive(Debug, Clone)]
pub(super) struct ProbeAnswer {
    pub(super) probe: u64,
    pub(super) ctx: CausalContext,
}

impl<C: MapCrdt, P: Ord + Clone + std::fmt::Debug> SyncState<C, P> {
    /// Asks every neighbour for its causal context; returns the probe's number, to pass to
    /// [`probe_included`](Self::probe_included). Drain the transmits after it.
    pub fn probe_neighbours(&mut self) -> u64 {
        self.probes_sent += 1;
        let probe = self.probes_sent;
        let epoch = self.epoch;
        let peers: Vec<P> = self.neighbours.keys().cloned().collect();
        for peer in peers {
            self.send(&peer, &Message::Probe { epoch, probe });
        }
        probe
    }

    /// Asks one neighbour for its causal context (behind a repair, to hear that it landed);
    /// returns the probe's number. Probes of reads and of repairs share the numbering, so
    /// an answer to either tells a read what it needs.
    pub(super) fn probe_one(&mut self, peer: &P) -> u64 {
        self.probes_sent += 1;
        let probe = self.probes_sent;
        let epoch = self.epoch;
        self.send(peer, &Message::Probe { epoch, probe });
        probe
    }

    /// How many of `peers` answered probe `probe` (or a later one) with a state this replica
    /// now includes.
    pub fn probe_included(&self, probe: u64, peers: &[P]) -> usize {
        let ours = self.crdt.as_causal().context();
        peers
            .iter()
            .filter(|p| {
                self.probe_answers
                    .get(*p)
                    .is_some_and(|a| a.probe >= probe && a.ctx.is_subset(ours))
            })
            .count()
    }

    pub(super) fn on_probe(&mut self, from: &P, epoch: u64, probe: u64) {
        let ctx = self.crdt.as_causal().context().clone();
        // Too large for a message (a context naming very many replicas): not answered, and
        // the asking read times out rather than reading less than it asked for.
        self.send(from, &Message::ProbeAnswer { epoch, probe, ctx });
    }

    pub(super) fn on_probe_answer(&mut self, from: &P, epoch: u64, probe: u64, ctx: CausalContext) {
        if epoch != self.epoch || probe > self.probes_sent {
            return; // for an earlier incarnation of ours, or never asked
        }
        self.on_landed(from, probe);
        let newer = self.probe_answers.get(from).is_none_or(|a| a.probe < probe);
        if newer {
            self.probe_answers
                .insert(from.clone(), ProbeAnswer { probe, ctx });
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::clock::Timestamp;
    use crate::crdt::{AwLwwMap, ReplicaId};
    use crate::sync::{SyncConfig, SyncState};

    type Map = AwLwwMap<String, u32>;

    fn carry(
        from: &mut SyncState<Map, &'static str>,
        name: &'static str,
        to: &mut SyncState<Map, &'static str>,
    ) {
        while let Some(t) = from.poll_transmit() {
            to.handle_message(&name, &t.bytes).expect("accepted");
        }
    }

    #[test]
    fn a_probe_counts_a_neighbour_once_its_state_is_included() {
        let mut a: SyncState<Map, &str> =
            SyncState::new(ReplicaId::new(1), 1, Map::new(), SyncConfig::default());
        let mut b: SyncState<Map, &str> =
            SyncState::new(ReplicaId::new(2), 2, Map::new(), SyncConfig::default());
        a.set_neighbours(["b"]);
        b.set_neighbours(["a"]);
        carry(&mut a, "a", &mut b);
        carry(&mut b, "b", &mut a);
        carry(&mut a, "a", &mut b);
        // b holds a write a has not seen.
        b.mutate(|m, id| m.put(id, Timestamp::new(1, 0), "k".to_string(), 1));
        let probe = a.probe_neighbours();
        assert_eq!(a.probe_included(probe, &["b"]), 0, "not answered yet");
        carry(&mut a, "a", &mut b);
        // b answers (and may send its delta in the same breath): drain only the answer.
        let mut answered = false;
        while let Some(t) = b.poll_transmit() {
            a.handle_message(&"b", &t.bytes).expect("accepted");
            answered = true;
        }
        assert!(answered);
        if a.crdt().get("k").is_none() {
            assert_eq!(
                a.probe_included(probe, &["b"]),
                0,
                "b's write is missing here"
            );
        }
        for _ in 0..6 {
            a.handle_tick();
            b.handle_tick();
            carry(&mut a, "a", &mut b);
            carry(&mut b, "b", &mut a);
        }
        assert_eq!(a.crdt().get("k"), Some(&1));
        assert_eq!(a.probe_included(probe, &["b"]), 1);
        // A later probe needs a later answer.
        let next = a.probe_neighbours();
        assert_eq!(a.probe_included(next, &["b"]), 0);
        carry(&mut a, "a", &mut b);
        carry(&mut b, "b", &mut a);
        assert_eq!(a.probe_included(next, &["b"]), 1);
    }

    #[test]
    fn an_answer_to_another_incarnation_or_an_unasked_probe_is_ignored() {
        let mut a: SyncState<Map, &str> =
            SyncState::new(ReplicaId::new(1), 1, Map::new(), SyncConfig::default());
        a.set_neighbours(["b"]);
        let probe = a.probe_neighbours();
        let ctx = crate::crdt::CausalContext::default();
        a.on_probe_answer(&"b", 99, probe, ctx.clone());
        assert_eq!(a.probe_included(probe, &["b"]), 0);
        a.on_probe_answer(&"b", 1, probe + 5, ctx);
        assert_eq!(a.probe_included(probe, &["b"]), 0);
    }
}
