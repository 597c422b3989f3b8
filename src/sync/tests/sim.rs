//! A deterministic network of replicas, in the spirit of quinn's test `Pair`: a virtual clock
//! in ticks, a seeded RNG, and a network that drops, duplicates, delays (so reorders) and
//! partitions messages, and crashes replicas, restarting them with their persisted state or
//! without it (then with a fresh replica id).

use crate::clock::Hlc;
use crate::crdt::{AwLwwMap, Crdt, Embeddable, ReplicaId};
use crate::sync::{SyncConfig, SyncState};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;

pub(super) type Map = AwLwwMap<u32, Vec<u8>>;

/// How hostile the network is.
#[derive(Debug, Clone, Copy)]
pub(super) struct Faults {
    pub(super) drop: f64,
    pub(super) duplicate: f64,
    /// Each message is delayed by 0..=max_delay ticks, so messages overtake each other.
    pub(super) max_delay: u64,
}

impl Faults {
    pub(super) const NONE: Faults = Faults {
        drop: 0.0,
        duplicate: 0.0,
        max_delay: 0,
    };
}

struct Packet {
    due: u64,
    from: usize,
    to: usize,
    bytes: Vec<u8>,
}

pub(super) struct Node {
    pub(super) sync: Option<SyncState<Map, usize>>,
    /// Its configuration: replicas may differ in `max_sync_size`.
    config: SyncConfig,
    /// What survives a crash: the state as of the last change (storage writes before a put
    /// returns).
    persisted: Map,
    id: ReplicaId,
    clock: Hlc,
}

pub(super) struct Sim {
    pub(super) rng: StdRng,
    pub(super) nodes: Vec<Node>,
    config: SyncConfig,
    in_flight: Vec<Packet>,
    pub(super) now: u64,
    pub(super) faults: Faults,
    cut: BTreeSet<(usize, usize)>,
    next_id: u64,
    next_epoch: u64,
    /// Every delta ever made, with the incarnation (node, id) that made it.
    deltas: Vec<(ReplicaId, Map)>,
    /// Incarnations whose unreplicated writes may be lost (crashed without state).
    wiped: BTreeSet<ReplicaId>,
    pub(super) bytes_sent: u64,
    pub(super) largest_message: usize,
    /// The first incarnations: the history (delta of origin `r0`) lives only with them until
    /// it spreads, and may be lost if they are all wiped.
    initial_ids: Vec<ReplicaId>,
    /// Messages a replica refused for their size (before it told the sender its limit).
    pub(super) refused_for_size: u64,
}

impl Sim {
    pub(super) fn new(seed: u64, nodes: usize, config: SyncConfig) -> Self {
        Self::with_configs(seed, vec![config; nodes], &Map::new())
    }

    /// Replicas with their own configurations, all starting from `history` (as if they had
    /// synced it before, e.g. writes and removes of many replica ids long gone).
    pub(super) fn with_configs(seed: u64, configs: Vec<SyncConfig>, history: &Map) -> Self {
        let nodes = configs.len();
        let config = configs
            .iter()
            .min_by_key(|c| c.max_sync_size)
            .cloned()
            .unwrap_or_default();
        let mut sim = Sim {
            rng: StdRng::seed_from_u64(seed),
            nodes: Vec::new(),
            config,
            in_flight: Vec::new(),
            now: 0,
            faults: Faults::NONE,
            cut: BTreeSet::new(),
            next_id: 1,
            next_epoch: 1,
            deltas: Vec::new(),
            wiped: BTreeSet::new(),
            bytes_sent: 0,
            largest_message: 0,
            refused_for_size: 0,
            initial_ids: Vec::new(),
        };
        if !history.is_empty() {
            sim.deltas.push((ReplicaId::new(0), history.clone()));
        }
        for node_config in configs {
            let id = sim.fresh_id();
            sim.nodes.push(Node {
                sync: None,
                config: node_config,
                persisted: history.clone(),
                id,
                clock: Hlc::default(),
            });
        }
        sim.initial_ids = sim.nodes.iter().map(|n| n.id).collect();
        for i in 0..nodes {
            sim.boot(i);
        }
        sim
    }

    fn fresh_id(&mut self) -> ReplicaId {
        self.next_id += 1;
        ReplicaId::new(self.next_id)
    }

    fn boot(&mut self, i: usize) {
        self.next_epoch += 1;
        let count = self.nodes.len();
        let node = &mut self.nodes[i];
        let mut sync = SyncState::new(
            node.id,
            self.next_epoch,
            node.persisted.clone(),
            node.config.clone(),
        );
        sync.set_neighbours((0..count).filter(|&j| j != i));
        // A restarted clock resumes after what it persisted: it never reissues a timestamp.
        if let Some(ts) = node.persisted.max_timestamp() {
            node.clock = Hlc::resume(ts.max(node.clock.last()), Hlc::DEFAULT_MAX_DRIFT_MS);
        }
        self.nodes[i].sync = Some(sync);
    }

    /// The smallest `max_sync_size` among the replicas.
    pub(super) fn smallest_limit(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| n.config.max_sync_size)
            .min()
            .unwrap_or(0)
    }

    pub(super) fn is_up(&self, i: usize) -> bool {
        self.nodes[i].sync.is_some()
    }

    pub(super) fn put(&mut self, i: usize, key: u32, value: Vec<u8>) {
        let now = self.now;
        let node = &mut self.nodes[i];
        let Some(sync) = node.sync.as_mut() else {
            return;
        };
        let ts = node.clock.now(now);
        let delta = sync.mutate(|m, id| m.put(id, ts, key, value));
        // Nagle-style eager send, when the config asks for it (a no-op otherwise).
        let _ = sync.flush();
        node.persisted.join(&delta);
        self.deltas.push((node.id, delta));
        self.flush(i);
    }

    pub(super) fn remove(&mut self, i: usize, key: u32) {
        let node = &mut self.nodes[i];
        let Some(sync) = node.sync.as_mut() else {
            return;
        };
        let delta = sync.mutate(|m, _| m.remove(&key));
        let _ = sync.flush();
        node.persisted.join(&delta);
        self.deltas.push((node.id, delta));
        self.flush(i);
    }

    pub(super) fn crash(&mut self, i: usize, keep_state: bool) {
        self.nodes[i].sync = None;
        self.in_flight.retain(|p| p.to != i);
        if !keep_state {
            self.wiped.insert(self.nodes[i].id);
            self.nodes[i].persisted = Map::new();
            self.nodes[i].id = self.fresh_id();
        }
    }

    pub(super) fn restart(&mut self, i: usize) {
        if !self.is_up(i) {
            self.boot(i);
        }
    }

    pub(super) fn partition(&mut self, a: usize, b: usize) {
        self.cut.insert((a.min(b), a.max(b)));
    }

    pub(super) fn heal(&mut self) {
        self.cut.clear();
    }

    /// One tick: deliver what is due, then tick every live replica.
    pub(super) fn step(&mut self) {
        self.now += 1;
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.in_flight)
            .into_iter()
            .partition(|p| p.due <= now);
        self.in_flight = later;
        for p in due {
            if std::env::var("HERD_TRACE").is_ok_and(|t| t.parse::<u64>().is_ok_and(|t| now >= t)) {
                type M = crate::sync::message::Message<
                    u32,
                    crate::crdt::DotFun<crate::crdt::Lww<Vec<u8>>>,
                >;
                if let Ok(m) = crate::codec::decode::<M>(&p.bytes, usize::MAX) {
                    let text = format!("{m:?}");
                    eprintln!(
                        "t{now} {}->{}: {}",
                        p.from,
                        p.to,
                        &text[..text.len().min(400)]
                    );
                }
            }
            let Some(sync) = self.nodes[p.to].sync.as_mut() else {
                continue;
            };
            // The simulated peers follow the protocol: a refusal here is a bug, except for
            // a message over the receiver's limit sent before the sender learnt it.
            match sync.handle_message(&p.from, &p.bytes) {
                Ok(()) => {}
                Err(crate::sync::SyncError::Codec(crate::codec::CodecError::FrameTooLarge {
                    ..
                })) => self.refused_for_size += 1,
                Err(e) => panic!("replica {} refused a message from {}: {e}", p.to, p.from),
            }
            if let Some(node) = self.nodes.get_mut(p.to) {
                let state = node.sync.as_ref().map(|s| s.crdt().clone());
                if let Some(state) = state {
                    node.persisted = state;
                }
            }
            self.flush(p.to);
        }
        for i in 0..self.nodes.len() {
            if let Some(sync) = self.nodes[i].sync.as_mut() {
                sync.handle_tick();
                self.flush(i);
            }
        }
    }

    /// Moves what replica `i` wants to send onto the network, through the faults.
    fn flush(&mut self, i: usize) {
        let Some(sync) = self.nodes[i].sync.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        while let Some(t) = sync.poll_transmit() {
            out.push(t);
        }
        while sync.poll_event().is_some() {}
        for t in out {
            self.bytes_sent += t.bytes.len() as u64;
            self.largest_message = self.largest_message.max(t.bytes.len());
            let own = self.nodes[i].config.max_sync_size;
            assert!(
                t.bytes.len() <= own,
                "message of {} bytes over max_sync_size {own}",
                t.bytes.len(),
            );
            if self.cut.contains(&(i.min(t.to), i.max(t.to)))
                || self.rng.random_bool(self.faults.drop)
            {
                continue;
            }
            let copies = if self.rng.random_bool(self.faults.duplicate) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let delay = self.rng.random_range(0..=self.faults.max_delay);
                self.in_flight.push(Packet {
                    due: self.now + 1 + delay,
                    from: i,
                    to: t.to,
                    bytes: t.bytes.clone(),
                });
            }
        }
    }

    /// True when every live replica holds the same state. (An idle pair always has a digest
    /// in flight, so the network is never empty.)
    pub(super) fn converged(&self) -> bool {
        let live: Vec<&SyncState<Map, usize>> =
            self.nodes.iter().filter_map(|n| n.sync.as_ref()).collect();
        live.windows(2)
            .all(|w| w[0].root() == w[1].root() && w[0].crdt() == w[1].crdt())
    }

    /// Runs fault-free until converged; returns the ticks it took, or `None` after `limit`.
    pub(super) fn settle(&mut self, limit: u64) -> Option<u64> {
        self.faults = Faults::NONE;
        self.heal();
        for i in 0..self.nodes.len() {
            self.restart(i);
        }
        let start = self.now;
        let mut equal_since = None;
        while self.now - start < limit {
            self.step();
            if !self.converged() {
                equal_since = None;
                continue;
            }
            let since = *equal_since.get_or_insert(self.now);
            // Equal, and still equal once everything sent before is surely delivered.
            if self.now - since > self.faults.max_delay + 3 {
                return Some(since - start);
            }
        }
        None
    }

    /// The final state must hold every write that was accepted and durable (no lost write, no
    /// resurrected key), nothing that was never written, and equal Merkle roots.
    pub(super) fn check_final_state(&self) -> Result<(), String> {
        let live: Vec<&SyncState<Map, usize>> =
            self.nodes.iter().filter_map(|n| n.sync.as_ref()).collect();
        let Some(first) = live.first() else {
            return Ok(());
        };
        let state = first.crdt();
        let mut all = Map::new();
        for (origin, delta) in &self.deltas {
            all.join(delta);
            let history_wiped = *origin == ReplicaId::new(0)
                && self.initial_ids.iter().all(|id| self.wiped.contains(id));
            if !self.wiped.contains(origin) && !history_wiped && !delta.leq(state) {
                let missing: Vec<_> = delta
                    .iter()
                    .filter(|(k, v)| state.get(k) != Some(v))
                    .map(|(k, _)| *k)
                    .take(10)
                    .collect();
                return Err(format!(
                    "accepted write lost or removed key resurrected (origin {origin:?}): keys {missing:?}; wiped {:?}, nodes {}",
                    self.wiped,
                    self.nodes.len()
                ));
            }
        }
        // Every value held was written by someone, and every write seen was made. (The
        // state may exceed the join of all writes only by removes lost with a wiped replica.)
        let mut written = BTreeSet::new();
        for (_, delta) in &self.deltas {
            for (_, store) in delta.as_causal().store().iter() {
                for (dot, _) in store.iter() {
                    written.insert(dot);
                }
            }
        }
        for (_, store) in state.as_causal().store().iter() {
            if let Some((dot, _)) = store.iter().find(|(d, _)| !written.contains(d)) {
                return Err(format!("final state holds {dot:?}, which nobody wrote"));
            }
        }
        if !state.context().is_subset(all.context()) {
            return Err("final state has seen writes nobody made".into());
        }
        if self.wiped.is_empty() && state != &all {
            return Err("final state differs from the join of all writes".into());
        }
        for s in &live {
            if s.root() != first.root() || s.crdt() != state {
                return Err("replicas differ".into());
            }
            if s.stats().unsendable_messages > 0 {
                return Err("a message could not be encoded within max_sync_size".into());
            }
        }
        Ok(())
    }
}

impl Sim {
    /// A description of how the live replicas differ, for a failing seed.
    pub(super) fn describe_divergence(&self) -> String {
        let live: Vec<(usize, &SyncState<Map, usize>)> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.sync.as_ref().map(|s| (i, s)))
            .collect();
        let mut out = String::new();
        for (i, s) in &live {
            out += &format!(
                "node {i} id {:?}: {} keys, root {:?}, ctx {:?}, stats {:?}\n",
                s.id(),
                s.crdt().len(),
                s.root(),
                s.crdt().context(),
                s.stats()
            );
        }
        for (i, s) in &live {
            let rebuilt =
                SyncState::<Map, usize>::new(s.id(), 0, s.crdt().clone(), self.config.clone());
            if rebuilt.root() != s.root() {
                out += &format!("node {i}: STALE TREE (rebuilt root {:?})\n", rebuilt.root());
            }
        }
        for w in live.windows(2) {
            let [(a, x), (b, y)] = [w[0], w[1]];
            let keys: BTreeSet<u32> = x
                .crdt()
                .iter()
                .chain(y.crdt().iter())
                .map(|(k, _)| *k)
                .collect();
            for k in keys {
                let dx = x.crdt().as_causal().key_dots(&k);
                let dy = y.crdt().as_causal().key_dots(&k);
                if dx != dy {
                    out += &format!("key {k}: node {a} {dx:?} / node {b} {dy:?}\n");
                }
            }
        }
        out
    }
}
