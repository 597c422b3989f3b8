//! The repair path: digests, context exchange, whole-key repairs and the Merkle descent.

use super::MapCrdt;
use super::keys::key_hash;
use super::message::{DotRange, Message};
use super::pack::{Placed, RepairPacker};
use super::state::{ENVELOPE, Landing, MAX_LANDING_PROBES, SyncState, SyncWarning};
use crate::codec;
use crate::crdt::{Causal, CausalContext, Dot, DotMap, DotStore, ReplicaId};
use crate::merkle::{Digest, KeyHash, NodePath};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Repair messages of one burst.
type Repairs<C> = Vec<Message<<C as MapCrdt>::Key, <C as MapCrdt>::Value>>;

impl<C: MapCrdt, P: Ord + Clone + std::fmt::Debug> SyncState<C, P> {
    pub(super) fn on_digest(&mut self, from: &P, root: Digest, ctx_hash: u64) {
        if root == self.tree.root() && ctx_hash == self.context_hash() {
            return;
        }
        self.wake_rounds();
        let (ctx, _) = self.sendable_context(self.limit_for(from));
        let msg = Message::Context {
            from: self.id,
            root: self.tree.root(),
            ctx,
        };
        self.send(from, &msg);
    }

    /// Our context for a message of at most `limit` bytes: without the dot cloud if the whole
    /// would take more than half of it, and empty if even the version vector would. A subset
    /// of a context is always safe to send (the peer only keeps more, or sends more). The
    /// cloud matters: dots of a replica whose first writes were lost with it can only ever
    /// live there, and removes of them are decided with it.
    ///
    /// Returns the context and its encoded size, which message budgets subtract.
    pub(super) fn sendable_context(&self, limit: usize) -> (CausalContext, usize) {
        let ctx = self.crdt.as_causal().context();
        let fits = |len: usize| len + ENVELOPE <= limit / 2;
        match codec::encoded_len(ctx) {
            Ok(len) if fits(len) => (ctx.clone(), len),
            _ => {
                let vv = ctx.vector_only();
                match codec::encoded_len(&vv) {
                    Ok(len) if fits(len) => (vv, len),
                    _ => {
                        let empty = CausalContext::new();
                        let len = codec::encoded_len(&empty).unwrap_or(0);
                        (empty, len)
                    }
                }
            }
        }
    }

    /// Reports keys found too large for `peer`'s limit: counted, warned and told to the peer,
    /// once per key (and again if its limit changes).
    pub(super) fn report_oversized(&mut self, peer: &P, oversized: Vec<(KeyHash, usize)>) {
        let limit = self.limit_for(peer);
        for (key, size) in oversized {
            let new = self
                .neighbours
                .get_mut(peer)
                .is_some_and(|n| n.oversized.insert(key));
            if new {
                self.stats.entries_too_large_for_peer += 1;
                self.warnings.push_back(SyncWarning::EntryTooLargeForPeer {
                    peer: peer.clone(),
                    size,
                    limit,
                });
                self.send(
                    peer,
                    &Message::Oversized {
                        key,
                        size: size as u64,
                    },
                );
            }
        }
    }

    pub(super) fn on_context(
        &mut self,
        from: &P,
        their_id: ReplicaId,
        root: Digest,
        ctx: CausalContext,
    ) {
        if root == self.tree.root() {
            // Equal stores: every write their context covers is here or removed here, so we
            // may record it as seen (this is how contexts compact after a repair).
            self.crdt.as_causal_mut().ctx.union(&ctx);
            return;
        }
        if self
            .neighbours
            .get(from)
            .is_some_and(|n| n.landing.is_some())
        {
            // An answer to a digest sent before our last repair: it cannot show the repair,
            // and acting on it would send the repair again. The probe behind the repair
            // brings the next comparison.
            return;
        }
        let their_hash = super::keys::context_hash(&ctx);
        let ours = (their_hash, self.tree.root());
        let stalled = their_hash == self.context_hash()
            || self.neighbours.get(from).and_then(|n| n.last_context) == Some(ours);
        if let Some(n) = self.neighbours.get_mut(from) {
            n.last_context = Some(ours);
        }
        // Writes of a third replica that `from` is still receiving (its entry grew since its
        // last context) are on their way from their writer: repairing them too would send
        // them twice, and at 100,000 keys that was most of a node's work while it converged.
        // They are repaired at the next context if its entry stops growing (the writer
        // crashed, or cannot reach it). Our own writes and the sender's are never skipped.
        let before = self
            .neighbours
            .get_mut(from)
            .and_then(|n| n.last_vector.replace(ctx.vector().to_vec()));
        let streaming: BTreeSet<ReplicaId> = before
            .map(|before| {
                // A replica missing from the last vector had written nothing there.
                let was = |r| before.iter().find(|&&(b, _)| b == r).map_or(0, |&(_, m)| m);
                ctx.vector()
                    .iter()
                    .filter(|&&(r, n)| r != self.id && r != their_id && was(r) < n)
                    .map(|&(r, _)| r)
                    .collect()
            })
            .unwrap_or_default();
        let (messages, keys) = self.unseen_repairs(from, &ctx, &streaming);
        let found = keys > 0;
        if !messages.is_empty() {
            self.stats.repair_keys_sent += keys;
            for msg in &messages {
                self.send(from, msg);
            }
            self.probe_landing(from);
        }
        if !found && stalled && self.leads_descent(&ctx, their_id) {
            // Nothing they have not seen, yet the trees differ, and nothing is landing (equal
            // contexts, or no change on either side since their last context): some keys hold
            // writes that one side removed. Find them by descending the trees; the replica
            // with the lower id leads so that a pair descends once.
            self.start_descent(from);
        }
    }

    /// Sends a probe behind a repair burst just sent to `peer`: its answer says the burst
    /// landed (see [`Landing`](super::state::Landing)).
    fn probe_landing(&mut self, peer: &P) {
        // A burst leaves only when none is landing (`on_context` waits for the probe).
        let probe = self.probe_one(peer);
        let retry_at = self.tick + self.landing_wait(peer, 0);
        if let Some(n) = self.neighbours.get_mut(peer) {
            n.landing = Some(Landing {
                probe,
                retry_at,
                retries: 0,
            });
        }
    }

    /// Ticks to wait for the answer to the `retries`-th probe behind a repair: the round
    /// trip's timeout (at least `repair_cooldown_ticks`), doubled at each retry, since a
    /// large burst takes long to apply.
    fn landing_wait(&self, peer: &P, retries: u32) -> u64 {
        let floor = self.config.resend_after_ticks;
        let base = self
            .neighbours
            .get(peer)
            .map_or(floor, |n| n.round_trip.timeout(floor))
            .max(self.config.repair_cooldown_ticks)
            .max(1);
        base << retries.min(16)
    }

    /// At a tick: probes again behind a repair whose landing was not heard of in time, and
    /// gives up waiting after [`MAX_LANDING_PROBES`] (digests resume).
    pub(super) fn check_landing(&mut self, peer: &P) {
        let Some(landing) = self.neighbours.get(peer).and_then(|n| n.landing) else {
            return;
        };
        if self.tick < landing.retry_at {
            return;
        }
        if landing.retries >= MAX_LANDING_PROBES {
            if let Some(n) = self.neighbours.get_mut(peer) {
                n.landing = None;
            }
            return;
        }
        self.probe_one(peer);
        let retries = landing.retries + 1;
        let retry_at = self.tick + self.landing_wait(peer, retries);
        if let Some(n) = self.neighbours.get_mut(peer) {
            n.landing = Some(Landing {
                retries,
                retry_at,
                ..landing
            });
        }
    }

    /// An answer to probe `probe` from `from`: if it was sent behind a repair, the repair
    /// landed, and the next comparison starts at once.
    pub(super) fn on_landed(&mut self, from: &P, probe: u64) {
        let landed = self
            .neighbours
            .get_mut(from)
            .filter(|n| n.landing.is_some_and(|l| probe >= l.probe));
        if let Some(n) = landed {
            n.landing = None;
            if n.may_get_digest(self.head) {
                let state = self.our_state();
                self.send_digest(from, state);
            }
        }
    }

    /// Every key holding a write `seen` does not cover, with all its entries, in dot order and
    /// in one burst of messages to `peer`; the first carries the dot ranges the receiver may
    /// then record as seen. Returns the messages and the number of keys they carry.
    fn unseen_repairs(
        &mut self,
        peer: &P,
        seen: &CausalContext,
        streaming: &BTreeSet<ReplicaId>,
    ) -> (Repairs<C>, u64) {
        let limit = self.limit_for(peer);
        let (ctx, ctx_len) = self.sendable_context(limit);
        let causal = self.crdt.as_causal();
        let mut candidates: Vec<(Dot, &C::Key, &C::Value)> = Vec::new();
        for (key, store) in causal.store().iter() {
            let mut first: Option<Dot> = None;
            store.for_each_dot(&mut |d| {
                let unseen = !seen.contains(d) && !streaming.contains(&d.replica);
                if unseen && first.is_none_or(|f| d < f) {
                    first = Some(d);
                }
            });
            if let Some(d) = first {
                candidates.push((d, key, store));
            }
        }
        candidates.sort_unstable_by_key(|(d, _, _)| *d);

        let mut packer: RepairPacker<C::Key, C::Value> =
            RepairPacker::new(limit, ctx, ctx_len, self.config.max_in_flight_bytes);
        let mut keys = 0;
        let mut full = false;
        // The keys not in the first message bound what the receiver may record as seen.
        let mut excluded: BTreeMap<ReplicaId, u64> = BTreeMap::new();
        for (_, key, store) in &candidates {
            let placed = if full {
                Placed::Full
            } else {
                packer.add(*key, *store)
            };
            match placed {
                Placed::First => keys += 1,
                Placed::Later => keys += 1,
                Placed::Oversized => {}
                Placed::Full => full = true,
            }
            if placed != Placed::First {
                store.for_each_dot(&mut |d| {
                    if !seen.contains(d) {
                        let e = excluded.entry(d.replica).or_insert(u64::MAX);
                        *e = (*e).min(d.counter);
                    }
                });
            }
        }
        // Every dot in `from..=to` is then in the first message, removed here, or seen there.
        let ranges = causal
            .context()
            .vector()
            .iter()
            // Nothing is claimed of a streaming replica: its writes were not looked at.
            .filter(|(r, _)| !streaming.contains(r))
            .filter_map(|&(r, n)| {
                let from = seen.contiguous(r) + 1;
                let to = n.min(excluded.get(&r).map_or(u64::MAX, |c| c - 1));
                (to >= from).then_some((r, from, to))
            })
            .collect();
        let oversized = packer.take_oversized();
        let messages = packer.finish(ranges);
        self.report_oversized(peer, oversized);
        (messages, keys)
    }

    pub(super) fn on_repair(
        &mut self,
        from: &P,
        their_ctx: &CausalContext,
        entries: Vec<(C::Key, C::Value)>,
        seen: &[DotRange],
    ) {
        let mut changed = Vec::new();
        for (key, theirs) in &entries {
            if let Some(removed) = self.join_key(key, theirs, their_ctx) {
                changed.push((key.clone(), removed));
            }
        }
        for &(r, lo, hi) in seen {
            self.crdt.as_causal_mut().ctx.insert_range(r, lo, hi);
        }
        self.changed_by_peer(from, changed);
    }

    pub(super) fn on_removals(
        &mut self,
        from: &P,
        their_ctx: &CausalContext,
        keys: Vec<(C::Key, Vec<Dot>)>,
    ) {
        let mut changed = Vec::new();
        for (key, mut live) in keys {
            live.sort_unstable(); // from the network: do not trust the order
            self.capture_previous(std::iter::once(&key));
            let before = self.crdt.as_causal().key_dots(&key);
            if !self
                .crdt
                .as_causal_mut()
                .remove_seen_under_key(&key, &live, their_ctx)
            {
                continue;
            }
            self.refresh_key(&key);
            let after = self.crdt.as_causal().key_dots(&key);
            let removed = before
                .into_iter()
                .filter(|d| after.binary_search(d).is_err())
                .collect();
            changed.push((key, removed));
        }
        self.changed_by_peer(from, changed);
    }

    /// Joins a peer's whole entries under `key` and keeps the tree in step. Returns `None` if
    /// nothing changed, else the dots the join removed from under `key`.
    fn join_key(
        &mut self,
        key: &C::Key,
        theirs: &C::Value,
        their_ctx: &CausalContext,
    ) -> Option<Vec<Dot>> {
        self.capture_previous(std::iter::once(key));
        let before = self.crdt.as_causal().key_dots(key);
        if !self
            .crdt
            .as_causal_mut()
            .join_key_from_peer(key, theirs, their_ctx)
        {
            return None;
        }
        self.refresh_key(key);
        let after = self.crdt.as_causal().key_dots(key);
        Some(
            before
                .into_iter()
                .filter(|d| after.binary_search(d).is_err())
                .collect(),
        )
    }

    /// Reports keys a peer changed, and forwards the change to the other neighbours as a
    /// keyed delta: each key's entries now, and the dots the change removed from under it.
    fn changed_by_peer(&mut self, from: &P, changed: Vec<(C::Key, Vec<Dot>)>) {
        if changed.is_empty() {
            self.emit_changed(Vec::new()); // drops captures of keys that did not change
            return;
        }
        let causal = self.crdt.as_causal();
        let mut store = DotMap::default();
        let mut ctx = CausalContext::new();
        for (key, removed) in &changed {
            let entries = causal.store().get(key).cloned().unwrap_or_default();
            entries.for_each_dot(&mut |d| ctx.insert(d));
            removed.iter().for_each(|&d| ctx.insert(d));
            store.entries.insert(key.clone(), entries);
        }
        self.push_delta(Causal::keyed(store, ctx), Some(from.clone()));
        let keys = changed.into_iter().map(|(k, _)| k).collect();
        self.emit_changed(keys);
    }

    // ---- Merkle descent ----

    /// Whether this replica leads the descent with a neighbour whose context is `theirs`:
    /// never while it is strictly behind (they have seen every write it has and more: their
    /// repairs to it are on the way, and a descent now fetched those keys a second time; an
    /// empty replica joining 400,000 keys was sent each key 33 times), always when strictly
    /// ahead, and otherwise (equal or incomparable contexts) when its id is the lower, so
    /// that a pair descends once.
    fn leads_descent(&self, theirs: &CausalContext, their_id: ReplicaId) -> bool {
        let ours = self.crdt.as_causal().context();
        match (ours.is_subset(theirs), theirs.is_subset(ours)) {
            (true, false) => false,
            (false, true) => true,
            _ => self.id < their_id,
        }
    }

    fn start_descent(&mut self, peer: &P) {
        if let Ok(children) = self.tree.children(NodePath::ROOT) {
            self.stats.nodes_sent += 1;
            self.send(
                peer,
                &Message::Nodes {
                    nodes: vec![(NodePath::ROOT, children)],
                },
            );
        }
    }

    pub(super) fn on_nodes(&mut self, from: &P, nodes: &[(NodePath, Vec<(u16, Digest)>)]) {
        let shape = self.tree.shape();
        let (ctx, ctx_len) = self.sendable_context(self.limit_for(from));
        let budget = self.limit_for(from).saturating_sub(ENVELOPE + ctx_len);
        let mut deeper = Vec::new();
        let mut buckets = Vec::new();
        let (mut nodes_used, mut buckets_used) = (0usize, 0usize);
        for (path, theirs) in nodes {
            let Ok(differing) = self.tree.diff(*path, theirs) else {
                continue;
            };
            for c in differing {
                let Ok(child) = path.child(&shape, c) else {
                    continue;
                };
                if child.level == shape.depth {
                    let keys = self.bucket_listing(child);
                    let size = 16 + 18 * keys.len();
                    if buckets_used + size <= budget {
                        buckets_used += size;
                        buckets.push((child, keys));
                    }
                } else if let Ok(children) = self.tree.children(child) {
                    let size = 16 + 11 * children.len();
                    if nodes_used + size <= budget {
                        nodes_used += size;
                        deeper.push((child, children));
                    }
                }
            }
        }
        if !deeper.is_empty() {
            self.stats.nodes_sent += deeper.len() as u64;
            self.send(from, &Message::Nodes { nodes: deeper });
        }
        if !buckets.is_empty() {
            let msg = Message::Buckets {
                ctx,
                reply: false,
                buckets,
            };
            self.send(from, &msg);
        }
    }

    fn bucket_listing(&self, bucket: NodePath) -> Vec<(KeyHash, Digest)> {
        self.tree
            .leaf_keys(bucket)
            .map(|keys| keys.collect())
            .unwrap_or_default()
    }

    pub(super) fn on_buckets(
        &mut self,
        from: &P,
        their_ctx: &CausalContext,
        reply: bool,
        buckets: &[(NodePath, Vec<(KeyHash, Digest)>)],
    ) {
        let shape = self.tree.shape();
        let wanted: HashSet<u64> = buckets.iter().map(|(p, _)| p.index).collect();
        // The tree knows key hashes, not keys: find our keys in these buckets.
        let mut ours: HashMap<u64, Vec<(KeyHash, C::Key)>> = HashMap::new();
        for (key, _) in self.crdt.as_causal().store().iter() {
            let kh = key_hash(key);
            let bucket = shape.index_of(kh, shape.depth);
            if wanted.contains(&bucket) {
                ours.entry(bucket).or_default().push((kh, key.clone()));
            }
        }
        let limit = self.limit_for(from);
        let (ctx, ctx_len) = self.sendable_context(limit);
        let mut packer =
            RepairPacker::new(limit, ctx.clone(), ctx_len, self.config.max_in_flight_bytes);
        let mut keys = 0;
        let mut answer = Vec::new();
        let mut changed = Vec::new();
        for (path, theirs) in buckets {
            let theirs: HashMap<KeyHash, Digest> = theirs.iter().copied().collect();
            let mine = ours.remove(&path.index).unwrap_or_default();
            let mut differs = theirs.len() != mine.len();
            for (kh, key) in &mine {
                match theirs.get(kh) {
                    None => {
                        // They have no entry under this key: what of ours they have seen,
                        // they removed.
                        if let Some(removed) = self.join_key(key, &C::Value::default(), their_ctx) {
                            changed.push((key.clone(), removed));
                        }
                    }
                    Some(d) if Some(*d) == self.tree.get(*kh) => continue,
                    Some(_) => {}
                }
                differs = true;
                if let Some(store) = self.crdt.as_causal().store().get(key) {
                    if store.is_empty() {
                        continue;
                    }
                    if matches!(packer.add(key, store), Placed::First | Placed::Later) {
                        keys += 1;
                    }
                }
            }
            if !reply && differs {
                // Show them our side of the bucket too: they hold keys we lack (they will
                // remove what we removed), or their entries under a shared key differ from
                // ours (they will send theirs, whose context may remove some of ours).
                answer.push((*path, self.bucket_listing(*path)));
            }
        }
        self.changed_by_peer(from, changed);
        let oversized = packer.take_oversized();
        self.report_oversized(from, oversized);
        self.stats.repair_keys_sent += keys;
        for msg in packer.finish(Vec::new()) {
            self.send(from, &msg);
        }
        if !answer.is_empty() {
            let msg = Message::Buckets {
                ctx,
                reply: true,
                buckets: answer,
            };
            self.send(from, &msg);
        }
    }
}
