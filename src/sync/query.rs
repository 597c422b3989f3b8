//! Questions about the sync state that the runtime asks but the protocol never needs: kept
//! apart from `state.rs` and `repair.rs` (the protocol) as additive, read-only methods.

use super::MapCrdt;
use super::message::Message;
use super::state::SyncState;
use crate::codec;

impl<C: MapCrdt, P: Ord + Clone + std::fmt::Debug> SyncState<C, P> {
    /// Whether `bytes`, a message received from a neighbour, shows that the neighbour holds
    /// every write this replica holds (or a later removal of it): a digest equal to ours (the
    /// same Merkle root and causal context), or a causal context that includes ours.
    ///
    /// A graceful leave uses it to know that it may go: once every neighbour has shown this,
    /// nothing acknowledged here lives only here. Reads the state, changes nothing; bytes that
    /// do not decode answer `false`.
    pub fn shows_peer_has_all(&self, bytes: &[u8]) -> bool {
        let Ok(msg) = codec::decode::<Message<C::Key, C::Value>>(bytes, self.config.max_sync_size)
        else {
            return false;
        };
        match msg {
            Message::Digest { root, ctx_hash } => {
                root == self.tree.root()
                    && ctx_hash == super::keys::context_hash(self.crdt.as_causal().context())
            }
            Message::Context { ctx, .. } | Message::ProbeAnswer { ctx, .. } => {
                self.crdt.as_causal().context().is_subset(&ctx)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::clock::Timestamp;
    use crate::crdt::{AwLwwMap, ReplicaId};
    use crate::sync::{SyncConfig, SyncState};

    type Map = AwLwwMap<String, u32>;

    /// Two empty replicas, `a` and `b`, each the other's neighbour.
    fn pair() -> (SyncState<Map, &'static str>, SyncState<Map, &'static str>) {
        let mut a = SyncState::new(ReplicaId::new(1), 1, Map::new(), SyncConfig::default());
        let mut b = SyncState::new(ReplicaId::new(2), 2, Map::new(), SyncConfig::default());
        a.set_neighbours(["b"]);
        b.set_neighbours(["a"]);
        (a, b)
    }

    /// Six ticks of both, each followed by carrying every message; `watch` sees each of b's
    /// messages before a handles it.
    fn run(
        a: &mut SyncState<Map, &'static str>,
        b: &mut SyncState<Map, &'static str>,
        mut watch: impl FnMut(&SyncState<Map, &'static str>, &[u8]),
    ) {
        for _ in 0..6 {
            a.handle_tick();
            b.handle_tick();
            while let Some(t) = a.poll_transmit() {
                b.handle_message(&"a", &t.bytes).unwrap();
            }
            while let Some(t) = b.poll_transmit() {
                watch(a, &t.bytes);
                a.handle_message(&"b", &t.bytes).unwrap();
            }
        }
    }

    #[test]
    fn a_digest_shows_convergence_only_when_equal() {
        let (mut a, mut b) = pair();
        a.mutate(|m, id| m.put(id, Timestamp::new(1, 0), "k".to_string(), 1u32));
        let mut confirmed = false;
        run(&mut a, &mut b, |a, bytes| {
            confirmed |= a.shows_peer_has_all(bytes);
        });
        assert!(confirmed, "b's digest after convergence confirms");
        // A write b has not seen: b's messages no longer confirm.
        a.mutate(|m, id| m.put(id, Timestamp::new(2, 0), "k2".to_string(), 2u32));
        b.handle_tick();
        while let Some(t) = b.poll_transmit() {
            assert!(!a.shows_peer_has_all(&t.bytes));
        }
        assert!(!a.shows_peer_has_all(b"garbage"));
    }

    /// A probe's answer confirms at once (no waiting for the peer's next digest), and only
    /// when the peer's context includes everything this replica holds.
    #[test]
    fn a_probe_answer_shows_convergence_only_when_it_includes_ours() {
        let (mut a, mut b) = pair();
        let ask = |a: &mut SyncState<Map, &'static str>, b: &mut SyncState<Map, &'static str>| {
            a.probe_neighbours();
            let mut shown = false;
            while let Some(t) = a.poll_transmit() {
                b.handle_message(&"a", &t.bytes).unwrap();
            }
            while let Some(t) = b.poll_transmit() {
                shown |= a.shows_peer_has_all(&t.bytes);
            }
            shown
        };
        a.mutate(|m, id| m.put(id, Timestamp::new(1, 0), "k".to_string(), 1u32));
        // The write's delta goes nowhere: b has not got it.
        while a.poll_transmit().is_some() {}
        assert!(!ask(&mut a, &mut b), "b lacks the write");
        b.mutate(|m, id| m.put(id, Timestamp::new(1, 0), "other".to_string(), 0u32));
        while b.poll_transmit().is_some() {}
        run(&mut a, &mut b, |_, _| {});
        assert!(ask(&mut a, &mut b), "b holds everything a holds");
    }
}
