use super::keys::{context_hash, key_hash, store_digest};
use super::message::Message;
use super::{MapCrdt, SyncConfig, SyncError};
use crate::codec;
use crate::crdt::{Causal, Crdt, DotMap, DotStore, ReplicaId};
use crate::merkle::{Digest, MerkleTree};
use std::collections::{BTreeMap, VecDeque};

/// Bytes to send to a neighbour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit<P> {
    /// The neighbour.
    pub to: P,
    /// One encoded message, at most `max_sync_size` bytes.
    pub bytes: Vec<u8>,
}

/// Changed keys with the stores they held before the change.
type Previous<C> = Vec<(<C as MapCrdt>::Key, Option<<C as MapCrdt>::Value>)>;

/// Something a neighbour changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncEvent<K, V> {
    /// These keys changed (added, updated or removed) through a neighbour's message.
    Changed(Vec<K>),
    /// Instead of [`Changed`](Self::Changed) while
    /// [`track_previous`](SyncState::track_previous) is on: each changed key with the dot
    /// store it held before the change (`None` if it was absent), so a subscriber can tell an
    /// add from an update and skip changes that left the visible value alone.
    ChangedFrom(Vec<(K, Option<V>)>),
}

/// Counters, for observability and the benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Encoded bytes handed to [`SyncState::poll_transmit`].
    pub bytes_sent: u64,
    /// Encoded bytes received through [`SyncState::handle_message`], accepted or not.
    pub bytes_received: u64,
    /// Messages sent.
    pub messages_sent: u64,
    /// Messages received and accepted.
    pub messages_received: u64,
    /// Messages refused (see [`SyncError`]).
    pub rejected_messages: u64,
    /// Deltas sent on the delta path.
    pub deltas_sent: u64,
    /// Keys sent whole on the repair path.
    pub repair_keys_sent: u64,
    /// Merkle nodes sent while descending.
    pub nodes_sent: u64,
    /// Deltas that alone exceed `max_sync_size` and so were left to the repair path.
    pub oversized_deltas: u64,
    /// Messages dropped because they could not be encoded within `max_sync_size` (the
    /// budgets should prevent it; what they carried is repaired later).
    pub unsendable_messages: u64,
    /// Buffered deltas dropped before every neighbour acknowledged them (buffer full).
    pub dropped_deltas: u64,
}

/// Room kept in every message for its envelope (enum tag, counters, length prefixes).
pub(super) const ENVELOPE: usize = 64;

#[derive(Debug, Clone)]
pub(super) struct Buffered<K, S, P> {
    pub(super) seq: u64,
    pub(super) origin: Option<P>,
    pub(super) delta: Causal<DotMap<K, S>>,
    pub(super) size: usize,
}

/// What we know about one neighbour.
#[derive(Debug, Clone, Default)]
pub(super) struct Neighbour {
    /// Our deltas up to here reached it.
    pub(super) acked: u64,
    /// Our deltas up to here were sent at tick `sent_at`.
    pub(super) sent_upto: u64,
    pub(super) sent_at: u64,
    /// No digest to it before this tick (a repair is landing).
    pub(super) quiet_until: u64,
    /// At its last `Context`: a hash of its context, and our root. Unchanged at the next one
    /// means nothing is landing on either side.
    pub(super) last_context: Option<(u64, Digest)>,
}

/// The sync protocol state of one replica of a map-shaped CRDT `C`, with neighbours named by
/// `P` (a node name, an index in a simulation...). See the [module docs](super).
///
/// # Examples
/// ```
/// use herd::clock::Timestamp;
/// use herd::crdt::{AwLwwMap, ReplicaId};
/// use herd::sync::{SyncConfig, SyncState};
///
/// type Map = AwLwwMap<String, u32>;
/// let mut a: SyncState<Map, &str> =
///     SyncState::new(ReplicaId::new(1), 1, Map::new(), SyncConfig::default());
/// let mut b: SyncState<Map, &str> =
///     SyncState::new(ReplicaId::new(2), 2, Map::new(), SyncConfig::default());
/// a.set_neighbours(["b"]);
/// b.set_neighbours(["a"]);
/// a.mutate(|m, id| m.put(id, Timestamp::new(1, 0), "k".to_string(), 1u32));
/// // Drive both until quiet: tick, then deliver what each wants to send.
/// for _ in 0..4 {
///     a.handle_tick();
///     b.handle_tick();
///     while let Some(t) = a.poll_transmit() {
///         b.handle_message(&"a", &t.bytes).unwrap();
///     }
///     while let Some(t) = b.poll_transmit() {
///         a.handle_message(&"b", &t.bytes).unwrap();
///     }
/// }
/// assert_eq!(b.crdt().get("k"), Some(&1));
/// assert_eq!(a.root(), b.root());
/// ```
pub struct SyncState<C: MapCrdt, P> {
    pub(super) id: ReplicaId,
    pub(super) epoch: u64,
    pub(super) config: SyncConfig,
    pub(super) crdt: C,
    pub(super) tree: MerkleTree,
    pub(super) tick: u64,
    /// Deltas `base + 1 ..= head`, oldest first.
    pub(super) buffer: VecDeque<Buffered<C::Key, C::Value, P>>,
    pub(super) head: u64,
    pub(super) neighbours: BTreeMap<P, Neighbour>,
    pub(super) transmits: VecDeque<Transmit<P>>,
    pub(super) events: VecDeque<SyncEvent<C::Key, C::Value>>,
    pub(super) stats: SyncStats,
    /// `Some` while previous stores are tracked: the stores of keys about to change, captured
    /// before the first change of each within the current message.
    pub(super) previous: Option<Previous<C>>,
}

impl<C: MapCrdt, P: Ord + Clone + std::fmt::Debug> SyncState<C, P> {
    /// A replica `id` holding `crdt` (empty, or loaded from storage). `epoch` names this
    /// incarnation: it must differ from the previous run's (a random number or a restart
    /// counter), so neighbours do not take new deltas for old ones.
    ///
    /// An invalid `config.shape` falls back to the default shape.
    pub fn new(id: ReplicaId, epoch: u64, crdt: C, config: SyncConfig) -> Self {
        let tree = MerkleTree::new(config.shape).unwrap_or_default();
        let mut state = SyncState {
            id,
            epoch,
            config,
            crdt,
            tree,
            tick: 0,
            buffer: VecDeque::new(),
            head: 0,
            neighbours: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: SyncStats::default(),
            previous: None,
        };
        state.rebuild_tree();
        state
    }

    /// This replica's id.
    pub fn id(&self) -> ReplicaId {
        self.id
    }

    /// The CRDT.
    pub fn crdt(&self) -> &C {
        &self.crdt
    }

    /// The Merkle root: equal roots mean equal data (with probability 1 − 2⁻⁶⁴).
    pub fn root(&self) -> Digest {
        self.tree.root()
    }

    /// The counters.
    pub fn stats(&self) -> &SyncStats {
        &self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    /// The current neighbours.
    pub fn neighbours(&self) -> impl Iterator<Item = &P> {
        self.neighbours.keys()
    }

    /// Deltas buffered for neighbours that have not acknowledged them.
    pub fn buffered_deltas(&self) -> usize {
        self.buffer.len()
    }

    /// Applies a local change: `op` runs a mutator of the CRDT with this replica's id and
    /// returns its delta, which is buffered for every neighbour and returned.
    pub fn mutate(&mut self, op: impl FnOnce(&mut C, ReplicaId) -> C) -> C {
        let delta = op(&mut self.crdt, self.id);
        let causal = delta.as_causal();
        if !causal.is_bottom() {
            self.refresh_keys(causal);
            self.push_delta(causal.clone(), None);
        }
        delta
    }

    /// Like [`mutate`](Self::mutate), for callers that do not need the delta back: it moves
    /// into the buffer instead of being cloned (the hot path of a replica's `put`).
    pub fn mutate_quiet(&mut self, op: impl FnOnce(&mut C, ReplicaId) -> C) {
        let delta = op(&mut self.crdt, self.id).into_causal();
        if !delta.is_bottom() {
            self.refresh_keys(&delta);
            self.push_delta(delta, None);
        }
    }

    /// Sets the neighbours. New ones start with nothing in flight: what they lack reaches
    /// them through the repair path. Removed ones are forgotten.
    pub fn set_neighbours<I: IntoIterator<Item = P>>(&mut self, neighbours: I) {
        let wanted: BTreeMap<P, ()> = neighbours.into_iter().map(|p| (p, ())).collect();
        self.neighbours.retain(|p, _| wanted.contains_key(p));
        for p in wanted.into_keys() {
            self.neighbours.entry(p).or_insert_with(|| Neighbour {
                acked: self.head,
                sent_upto: self.head,
                ..Neighbour::default()
            });
        }
        self.collect_garbage();
    }

    /// Advances time by one sync interval: sends buffered deltas and digests.
    pub fn handle_tick(&mut self) {
        self.tick += 1;
        let peers: Vec<P> = self.neighbours.keys().cloned().collect();
        let ctx_hash = self.context_hash();
        for peer in peers {
            self.send_deltas(&peer);
            self.maybe_send_digest(&peer, ctx_hash);
        }
        self.collect_garbage();
    }

    /// Handles bytes received from neighbour `from`.
    ///
    /// # Errors
    /// [`SyncError`] when the bytes are refused; the state is then unchanged.
    pub fn handle_message(&mut self, from: &P, bytes: &[u8]) -> Result<(), SyncError> {
        self.stats.bytes_received += bytes.len() as u64;
        let result = self.dispatch(from, bytes);
        match &result {
            Ok(()) => self.stats.messages_received += 1,
            Err(_) => self.stats.rejected_messages += 1,
        }
        result
    }

    /// The next message to send, if any. Drain after every `handle_*` and `mutate`.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit<P>> {
        self.transmits.pop_front()
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<SyncEvent<C::Key, C::Value>> {
        self.events.pop_front()
    }

    /// Turns on or off the capture of each changed key's previous store: while on, changes
    /// made by neighbours are reported as [`SyncEvent::ChangedFrom`]. Costs one clone of each
    /// changed key's store; off by default.
    pub fn track_previous(&mut self, on: bool) {
        self.previous = on.then(Vec::new);
    }

    fn dispatch(&mut self, from: &P, bytes: &[u8]) -> Result<(), SyncError> {
        if !self.neighbours.contains_key(from) {
            return Err(SyncError::UnknownNeighbour);
        }
        let msg: Message<C::Key, C::Value> = codec::decode(bytes, self.config.max_sync_size)?;
        // Validate what could fail before changing anything.
        self.validate(&msg)?;
        match msg {
            Message::Deltas {
                epoch,
                first,
                last,
                deltas,
            } => self.on_deltas(from, epoch, first, last, deltas),
            Message::Ack { epoch, first, last } => self.on_ack(from, epoch, first, last),
            Message::Digest { root, ctx_hash } => self.on_digest(from, root, ctx_hash),
            Message::Context {
                from: id,
                root,
                ctx,
            } => self.on_context(from, id, root, ctx),
            Message::Repair { ctx, entries, seen } => self.on_repair(from, &ctx, entries, &seen),
            Message::Nodes { nodes } => self.on_nodes(from, &nodes),
            Message::Buckets {
                ctx,
                reply,
                buckets,
            } => self.on_buckets(from, &ctx, reply, &buckets),
        }
        Ok(())
    }

    fn validate(&self, msg: &Message<C::Key, C::Value>) -> Result<(), SyncError> {
        let paths: Box<dyn Iterator<Item = _>> = match msg {
            Message::Nodes { nodes } => Box::new(nodes.iter().map(|(p, _)| *p)),
            Message::Buckets { buckets, .. } => Box::new(buckets.iter().map(|(p, _)| *p)),
            _ => Box::new(std::iter::empty()),
        };
        for path in paths {
            self.tree.node(path)?;
        }
        Ok(())
    }

    // ---- delta path ----

    pub(super) fn push_delta(
        &mut self,
        delta: Causal<DotMap<C::Key, C::Value>>,
        origin: Option<P>,
    ) {
        if self.neighbours.is_empty() {
            return; // Nobody to send it to; a later neighbour is repaired instead.
        }
        let size = codec::encoded_len(&delta).unwrap_or(usize::MAX);
        // Local writes between two ticks form one delta group (Almeida et al.): joined into
        // the newest buffered delta while no neighbour has been sent it yet. One entry per
        // tick instead of one per write, so the receiver reduces and joins once per group.
        // The group's size is kept as the sum of its parts, an upper bound of its encoding.
        let group_limit = self.config.max_sync_size / 4;
        if origin.is_none()
            && let Some(last) = self.buffer.back_mut()
            && last.origin.is_none()
            && last.size.saturating_add(size) <= group_limit
            && self.neighbours.values().all(|n| n.sent_upto < last.seq)
        {
            last.delta.join(&delta);
            last.size += size;
            return;
        }
        self.head += 1;
        self.buffer.push_back(Buffered {
            seq: self.head,
            origin,
            delta,
            size,
        });
        if self.buffer.len() > self.config.max_buffered_deltas {
            self.buffer.pop_front();
            self.stats.dropped_deltas += 1;
        }
    }

    fn send_deltas(&mut self, peer: &P) {
        let Some(n) = self.neighbours.get(peer) else {
            return;
        };
        if n.acked >= self.head {
            return;
        }
        let resend = self.tick.saturating_sub(n.sent_at) >= self.config.resend_after_ticks;
        let start = if n.sent_upto > n.acked && !resend {
            n.sent_upto + 1
        } else {
            n.acked + 1
        };
        if start > self.head {
            return;
        }
        let base = self.head - self.buffer.len() as u64;
        let start = start.max(base + 1);
        let budget = self.config.max_sync_size.saturating_sub(ENVELOPE);
        let (mut used, mut last, mut deltas) = (0usize, start - 1, Vec::new());
        for b in self.buffer.iter().skip((start - base - 1) as usize) {
            if b.origin.as_ref() == Some(peer) {
                last = b.seq; // never send a delta back where it came from (BP)
                continue;
            }
            if b.size > budget {
                self.stats.oversized_deltas += 1;
                last = b.seq;
                continue;
            }
            if used + b.size > budget {
                break;
            }
            used += b.size;
            last = b.seq;
            deltas.push(b.delta.clone());
        }
        let epoch = self.epoch;
        let tick = self.tick;
        let Some(n) = self.neighbours.get_mut(peer) else {
            return;
        };
        if deltas.is_empty() {
            // Nothing it lacks in this range: count it as delivered.
            n.acked = n.acked.max(last);
            n.sent_upto = n.sent_upto.max(last);
            return;
        }
        n.sent_upto = last;
        n.sent_at = tick;
        self.stats.deltas_sent += deltas.len() as u64;
        // One delta group: a single context for all of them, and a key written twice is sent
        // once.
        let mut group = Causal::empty_delta();
        for d in &deltas {
            group.join(d);
        }
        let deltas = vec![group];
        self.send(
            peer,
            &Message::Deltas {
                epoch,
                first: start,
                last,
                deltas,
            },
        );
    }

    fn on_deltas(
        &mut self,
        from: &P,
        epoch: u64,
        first: u64,
        last: u64,
        deltas: Vec<Causal<DotMap<C::Key, C::Value>>>,
    ) {
        let mut changed = Vec::new();
        for delta in deltas {
            // Keep only what is new here (RR), apply it, and forward just that.
            let new = delta.delta(self.crdt.as_causal());
            if new.is_bottom() {
                continue;
            }
            if new.is_keyed() {
                self.capture_previous(new.store().iter().map(|(k, _)| k));
                self.crdt.as_causal_mut().join(&new);
                changed.extend(self.refresh_keys_of(&new));
            } else {
                // A full state may remove keys it does not list (it forgot them): find those
                // by comparing key sets. O(n), like the join itself on this path.
                let before: Vec<C::Key> = self
                    .crdt
                    .as_causal()
                    .store()
                    .present_keys()
                    .cloned()
                    .collect();
                self.capture_previous(before.iter().chain(new.store().present_keys()));
                self.crdt.as_causal_mut().join(&new);
                self.rebuild_tree();
                let store = self.crdt.as_causal().store();
                changed.extend(
                    before
                        .into_iter()
                        .filter(|k| store.get(k).is_none_or(DotStore::is_empty)),
                );
                changed.extend(new.store().present_keys().cloned());
            }
            self.push_delta(new, Some(from.clone()));
        }
        self.emit_changed(changed);
        self.send(from, &Message::Ack { epoch, first, last });
    }

    fn on_ack(&mut self, from: &P, epoch: u64, first: u64, last: u64) {
        if epoch != self.epoch {
            return; // for a previous incarnation of ours
        }
        let head = self.head;
        if let Some(n) = self.neighbours.get_mut(from) {
            // Acknowledged without a gap: everything before `first` had already arrived (or
            // was given up to the repair path). Otherwise an earlier message was lost and
            // the resend timer covers it.
            if first <= n.acked + 1 {
                n.acked = n.acked.max(last.min(head));
                n.sent_upto = n.sent_upto.max(n.acked);
            }
        }
    }

    fn collect_garbage(&mut self) {
        let floor = self
            .neighbours
            .values()
            .map(|n| n.acked)
            .min()
            .unwrap_or(self.head);
        while self.buffer.front().is_some_and(|b| b.seq <= floor) {
            self.buffer.pop_front();
        }
        // After a burst of writes the buffer empties again: give its memory back.
        if self.buffer.capacity() > 1024 && self.buffer.len() <= self.buffer.capacity() / 4 {
            self.buffer.shrink_to(self.buffer.len() * 2);
        }
        // A neighbour behind what the buffer still holds is left to the repair path.
        let base = self.head - self.buffer.len() as u64;
        for n in self.neighbours.values_mut() {
            if n.acked < base {
                n.acked = base;
                n.sent_upto = n.sent_upto.max(base);
            }
        }
    }

    // ---- shared helpers ----

    /// Remembers the current stores of `keys` before they change, if tracking is on. Only the
    /// first capture of a key per message counts: that is its state before the message.
    pub(super) fn capture_previous<'k>(&mut self, keys: impl Iterator<Item = &'k C::Key>)
    where
        C::Key: 'k,
    {
        if let Some(previous) = self.previous.as_mut() {
            let store = self.crdt.as_causal().store();
            previous
                .extend(keys.map(|k| (k.clone(), store.get(k).filter(|s| !s.is_empty()).cloned())));
        }
    }

    /// Reports the keys a message changed: as [`SyncEvent::ChangedFrom`] with the stores
    /// captured before, or as [`SyncEvent::Changed`].
    pub(super) fn emit_changed(&mut self, changed: Vec<C::Key>) {
        let Some(previous) = self.previous.as_mut() else {
            if !changed.is_empty() {
                self.events.push_back(SyncEvent::Changed(changed));
            }
            return;
        };
        let captured = std::mem::take(previous);
        if changed.is_empty() {
            return;
        }
        let changed: std::collections::HashSet<&C::Key> = changed.iter().collect();
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(changed.len());
        for (key, before) in captured {
            if changed.contains(&key) && seen.insert(key.clone()) {
                out.push((key, before));
            }
        }
        self.events.push_back(SyncEvent::ChangedFrom(out));
    }

    pub(super) fn send(&mut self, to: &P, msg: &Message<C::Key, C::Value>) {
        match codec::encode(msg, self.config.max_sync_size) {
            Ok(bytes) => {
                self.stats.bytes_sent += bytes.len() as u64;
                self.stats.messages_sent += 1;
                self.transmits.push_back(Transmit {
                    to: to.clone(),
                    bytes,
                });
            }
            // Budgets keep messages under the limit; one that is not is dropped, and what it
            // carried is repaired later.
            Err(_) => self.stats.unsendable_messages += 1,
        }
    }

    /// Re-digests the keys a (keyed) value touches.
    pub(super) fn refresh_keys(&mut self, value: &Causal<DotMap<C::Key, C::Value>>) {
        for (key, _) in value.store().iter() {
            self.refresh_key(key);
        }
    }

    /// Re-digests the keys a (keyed) value touches; returns them.
    pub(super) fn refresh_keys_of(
        &mut self,
        value: &Causal<DotMap<C::Key, C::Value>>,
    ) -> Vec<C::Key> {
        let keys: Vec<C::Key> = value.store().iter().map(|(k, _)| k.clone()).collect();
        for key in &keys {
            self.refresh_key(key);
        }
        keys
    }

    pub(super) fn refresh_key(&mut self, key: &C::Key) {
        let digest = self
            .crdt
            .as_causal()
            .store()
            .get(key)
            .and_then(store_digest);
        let kh = key_hash(key);
        match digest {
            Some(digest) => self.tree.insert(kh, digest),
            None => self.tree.remove(kh),
        };
    }

    pub(super) fn rebuild_tree(&mut self) {
        let mut tree = MerkleTree::new(self.tree.shape()).unwrap_or_default();
        for (key, store) in self.crdt.as_causal().store().iter() {
            if let Some(digest) = store_digest(store) {
                tree.insert(key_hash(key), digest);
            }
        }
        self.tree = tree;
    }

    pub(super) fn context_hash(&self) -> u64 {
        context_hash(self.crdt.as_causal().context())
    }
}
