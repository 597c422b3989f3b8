use super::keys::{key_hash, store_digest};
use super::message::{Message, WireDelta};
use super::{MapCrdt, SyncConfig, SyncError};
use crate::clock::Timestamp;
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

/// A delta of `C`'s map, as buffered and sent.
type Delta<C> = Causal<DotMap<<C as MapCrdt>::Key, <C as MapCrdt>::Value>>;

/// Changed keys with the stores they held before the change.
type Previous<C> = Vec<(<C as MapCrdt>::Key, Option<<C as MapCrdt>::Value>)>;

/// Reads the newest hybrid-logical-clock timestamp in a key's store.
type TimestampReader<C> = fn(&<C as MapCrdt>::Value) -> Option<Timestamp>;

/// What a neighbour's message did to this replica, for the runtime to act on: the protocol
/// decides what happened, the runtime only stores, notifies and moves its clock.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncEvent<K, V> {
    /// The stores of these keys changed (added, updated or removed): store them, tell
    /// subscribers.
    StoresChanged(Changes<K, V>),
    /// The causal context grew, maybe with no key changing (the seen ranges of a repair):
    /// store it, so a restart does not ask neighbours for it again.
    ContextGrew,
    /// The changed keys now hold writes stamped up to this hybrid-logical-clock timestamp:
    /// observe it, so a later local write is ordered after them. Reported only when
    /// [`report_timestamps`](SyncState::report_timestamps) says how to read them.
    RemoteTimestamp(Timestamp),
}

/// The keys one message changed, and, while
/// [`track_previous`](SyncState::track_previous) is on, what each held before (kept inside the
/// crate: dot stores are not public API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes<K, V> {
    keys: Vec<K>,
    /// Parallel to `keys`: the store before the change (`None`: absent), if tracked.
    previous: Option<Vec<Option<V>>>,
}

impl<K, V> Changes<K, V> {
    /// The keys that changed.
    pub fn keys(&self) -> &[K] {
        &self.keys
    }

    /// The keys that changed, owned.
    pub fn into_keys(self) -> Vec<K> {
        self.keys
    }

    /// Each key with its store before the change, if previous stores were tracked.
    pub(crate) fn into_previous(self) -> Result<Vec<(K, Option<V>)>, Vec<K>> {
        match self.previous {
            Some(previous) => Ok(self.keys.into_iter().zip(previous).collect()),
            None => Err(self.keys),
        }
    }
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
    /// Times unacknowledged delta messages were sent again (an acknowledgement overdue).
    pub delta_resends: u64,
    /// Keys whose entries are too large for some neighbour's limit, each counted once per
    /// neighbour (and again if that neighbour's limit changes). They stay different there.
    pub entries_too_large_for_peer: u64,
    /// Notices from neighbours that they hold an entry too large for this replica's limit.
    pub entries_too_large_here: u64,
}

/// A condition worth a log line, reported once (see [`SyncState::poll_warning`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncWarning<P> {
    /// This replica holds an entry of `size` encoded bytes that cannot be sent to `peer`
    /// within its limit of `limit` bytes: the two differ under that key until the entry
    /// shrinks or the limit grows.
    EntryTooLargeForPeer {
        /// The neighbour.
        peer: P,
        /// The entry's encoded size.
        size: usize,
        /// The smaller of the two replicas' limits.
        limit: usize,
    },
    /// `peer` holds an entry of `size` encoded bytes that it cannot send here within this
    /// replica's `max_sync_size`.
    EntryTooLargeHere {
        /// The neighbour.
        peer: P,
        /// The entry's encoded size.
        size: usize,
    },
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
/// Limit assumed for the repair path's messages to a neighbour that has not said its own (an
/// old peer, or a `Hello` still on its way; deltas wait for the `Hello`): conservative, and a
/// neighbour that refuses a message for its size says its limit at once.
pub(super) const UNKNOWN_PEER_LIMIT: usize = 64 << 10;

/// The longest wait for an acknowledgement, in ticks, however many timeouts came before.
pub(super) const MAX_RESEND_TICKS: u64 = 64;

/// A message of deltas sent to a neighbour and not yet acknowledged.
#[derive(Debug, Clone, Copy)]
pub(super) struct InFlight {
    /// The last delta it carries.
    pub(super) last: u64,
    /// Its encoded size.
    pub(super) bytes: usize,
    /// The tick it was sent at.
    pub(super) tick: u64,
    /// It carries deltas sent before (a go-back-N resend): its acknowledgement may be the
    /// first copy's, so it gives no round-trip sample (Karn's rule).
    pub(super) resent: bool,
}

/// A neighbour's round-trip time of delta messages, in ticks, smoothed as TCP does
/// (RFC 6298, Jacobson/Karels): the resend timeout follows the neighbour. A receiver busy
/// applying a large window acknowledges it late, every time; with a fixed timeout the sender
/// took that for loss and sent the whole window again (measured: 100,000 presence entries
/// over 3 nodes, ~60 resends per node, 10x the bytes the entries needed), the copies queued
/// in front of the receiver and it fell further behind.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct RoundTrip {
    /// Smoothed round trip, in eighths of a tick; `None` before the first sample.
    srtt8: Option<u64>,
    /// Its mean deviation, in quarters of a tick.
    rttvar4: u64,
}

impl RoundTrip {
    /// Takes one sample of `ticks`.
    pub(super) fn sample(&mut self, ticks: u64) {
        let r8 = ticks.saturating_mul(8);
        match self.srtt8 {
            None => {
                self.srtt8 = Some(r8);
                self.rttvar4 = ticks.saturating_mul(2); // R/2, in quarters
            }
            Some(srtt8) => {
                // rttvar = 3/4 rttvar + 1/4 |srtt - R|; srtt = 7/8 srtt + 1/8 R.
                let err4 = srtt8.abs_diff(r8) / 2;
                self.rttvar4 = (3 * self.rttvar4 + err4) / 4;
                self.srtt8 = Some(srtt8 - srtt8 / 8 + r8 / 8);
            }
        }
    }

    /// Ticks to wait for an acknowledgement: srtt + 4 rttvar (at least one tick more than
    /// srtt), never less than `floor` (the configured `resend_after_ticks`).
    pub(super) fn timeout(&self, floor: u64) -> u64 {
        match self.srtt8 {
            None => floor,
            Some(srtt8) => (srtt8.div_ceil(8) + self.rttvar4.max(1)).max(floor),
        }
    }
}

/// A repair burst on its way to a neighbour, and the probe sent behind it.
///
/// Repairs are self-clocked: the next burst leaves when the last one has landed. A probe
/// sent after a burst is answered after the burst was applied (messages between two
/// replicas arrive in order), so its answer says the burst landed. Without this, every
/// digest sent while a large burst was being applied (about a second for 4 MiB, twenty
/// ticks) was answered with a context from before it, and each such answer sent the same
/// burst again: an empty peer joining 400,000 keys was sent each key ten times.
#[derive(Debug, Clone, Copy)]
pub(super) struct Landing {
    /// The first probe sent behind the burst: an answer to it or a later one means landed.
    pub(super) probe: u64,
    /// When to probe again if no answer came (the probe or the answer may be lost).
    pub(super) retry_at: u64,
    /// Probes sent again so far; after [`MAX_LANDING_PROBES`] the repair path falls back
    /// to digests (a peer that cannot answer, e.g. its context too large for a message).
    pub(super) retries: u32,
}

/// Probes sent again behind a repair burst before giving up on hearing it landed. The wait
/// doubles each time, so this covers about 2^5 times the first wait.
pub(super) const MAX_LANDING_PROBES: u32 = 5;

#[derive(Debug, Clone, Default)]
pub(super) struct Neighbour {
    /// Our deltas up to here reached it.
    pub(super) acked: u64,
    /// Our deltas up to here were sent (and are in flight, or acknowledged).
    pub(super) sent_upto: u64,
    /// Messages of deltas sent and not yet acknowledged, oldest first: the window.
    pub(super) in_flight: VecDeque<InFlight>,
    /// Ticks to wait for an acknowledgement before sending again: the round-trip timeout,
    /// doubled at every timeout without an acknowledgement in between (up to
    /// [`MAX_RESEND_TICKS`]), back to the start at the next acknowledgement of a message
    /// sent once. A receiver that is slow, not gone, must not be sent the same window again
    /// and again: the copies queue up in front of it and it falls further behind.
    pub(super) resend_ticks: u64,
    /// Its round trip, which sets the resend timeout.
    pub(super) round_trip: RoundTrip,
    /// The last delta sent before the latest go-back-N resend: messages up to it are
    /// copies, and give no round-trip sample.
    pub(super) resent_upto: u64,
    /// The largest message it accepts, once it said so.
    pub(super) limit: Option<usize>,
    /// Key hashes of our entries already reported as too large for it.
    pub(super) oversized: std::collections::HashSet<crate::merkle::KeyHash>,
    /// A repair burst sent to it that has not been seen to land (see [`Landing`]): no
    /// digest to it, and no new burst, until it has.
    pub(super) landing: Option<Landing>,
    /// At its last `Context`: a hash of its context, and our root. Unchanged at the next one
    /// means nothing is landing on either side.
    pub(super) last_context: Option<(u64, Digest)>,
    /// Its version vector at its last `Context`: a replica's entry that grew since is still
    /// streaming to it (see `on_context`).
    pub(super) last_vector: Option<Vec<(ReplicaId, u64)>>,
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
    pub(super) warnings: VecDeque<SyncWarning<P>>,
    /// Local writes between two ticks are grouped up to this size: a quarter of the smallest
    /// limit among the neighbours, so a group always fits a message to any of them.
    pub(super) group_limit: usize,
    /// `Some` while previous stores are tracked: the stores of keys about to change, captured
    /// before the first change of each within the current message.
    pub(super) previous: Option<Previous<C>>,
    /// How to read the newest timestamp in a store, for [`SyncEvent::RemoteTimestamp`].
    pub(super) timestamps: Option<TimestampReader<C>>,
    /// Read probes sent (see [`SyncState::probe_neighbours`]).
    pub(super) probes_sent: u64,
    /// Each neighbour's newest answer to a read probe.
    pub(super) probe_answers: BTreeMap<P, super::probe::ProbeAnswer>,
    /// When digests go out, and to whom.
    pub(super) rounds: super::rounds::Rounds<P>,
}

impl Neighbour {
    /// Whether a digest may go to it: nothing of ours unacknowledged (the deltas will close
    /// any difference a digest would show) and no repair landing (its probe brings the next
    /// comparison).
    pub(super) fn may_get_digest(&self, head: u64) -> bool {
        self.acked >= head && self.landing.is_none()
    }

    /// Whether it needs anything at a tick: its limit asked, deltas sent or resent, a repair
    /// probed again.
    fn needs_ticks(&self, head: u64) -> bool {
        self.limit.is_none() || !self.in_flight.is_empty() || !self.may_get_digest(head)
    }

    /// Drops the messages in flight that its acknowledgements now cover; returns the tick
    /// the newest of them that was not a resend was sent at.
    fn forget_acked(&mut self) -> Option<u64> {
        let mut sent_at = None;
        while let Some(f) = self.in_flight.front().filter(|f| f.last <= self.acked) {
            if !f.resent {
                sent_at = Some(f.tick);
            }
            self.in_flight.pop_front();
        }
        sent_at
    }

    /// Goes back to the first unacknowledged delta (go-back-N): what was in flight is sent
    /// again, and those copies give no round-trip sample.
    fn go_back(&mut self) {
        self.in_flight.clear();
        self.resent_upto = self.resent_upto.max(self.sent_upto);
        self.sent_upto = self.acked;
    }
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
            warnings: VecDeque::new(),
            group_limit: 0,
            previous: None,
            timestamps: None,
            probes_sent: 0,
            probe_answers: BTreeMap::new(),
            rounds: super::rounds::Rounds::default(),
        };
        state.group_limit = state.smallest_limit() / 4;
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

    /// Sends buffered local writes now to every neighbour with nothing in flight, when
    /// [`SyncConfig::send_when_idle`] is on (otherwise does nothing: deltas wait for the
    /// tick). A neighbour with messages in flight gets them when it acknowledges, grouped.
    /// Returns whether anything was queued to send.
    pub fn flush(&mut self) -> bool {
        if !self.config.send_when_idle {
            return false;
        }
        let queued = self.transmits.len();
        let idle: Vec<P> = self
            .neighbours
            .iter()
            .filter(|(_, n)| n.in_flight.is_empty() && n.acked < self.head)
            .map(|(p, _)| p.clone())
            .collect();
        for peer in idle {
            self.send_deltas(&peer);
        }
        self.transmits.len() > queued
    }

    /// Sets the neighbours. New ones start with nothing in flight: what they lack reaches
    /// them through the repair path. Removed ones are forgotten.
    pub fn set_neighbours<I: IntoIterator<Item = P>>(&mut self, neighbours: I) {
        let wanted: BTreeMap<P, ()> = neighbours.into_iter().map(|p| (p, ())).collect();
        self.neighbours.retain(|p, _| wanted.contains_key(p));
        self.probe_answers.retain(|p, _| wanted.contains_key(p));
        let mut added = Vec::new();
        for p in wanted.into_keys() {
            if !self.neighbours.contains_key(&p) {
                self.neighbours.insert(
                    p.clone(),
                    Neighbour {
                        acked: self.head,
                        sent_upto: self.head,
                        ..Neighbour::default()
                    },
                );
                added.push(p);
            }
        }
        // Say our limit at once: deltas to a neighbour wait until we know its limit.
        for p in &added {
            self.send_hello(p, false);
        }
        self.forget_gone();
        self.add_fresh(added);
        self.group_limit = self.smallest_limit() / 4;
        self.collect_garbage();
    }

    /// Turns relaying on or off ([`SyncConfig::relay`]): on when neighbours are set by hand,
    /// off when they are every member of a full mesh.
    pub fn set_relay(&mut self, on: bool) {
        self.config.relay = on;
    }

    /// Advances time by one sync interval: sends buffered deltas and digests.
    pub fn handle_tick(&mut self) {
        self.tick += 1;
        let peers: Vec<P> = self.neighbours.keys().cloned().collect();
        for peer in peers {
            if self
                .neighbours
                .get(&peer)
                .is_some_and(|n| n.limit.is_none())
            {
                self.send_hello(&peer, false);
            }
            self.send_deltas(&peer);
            self.check_landing(&peer);
        }
        self.digest_round();
        self.collect_garbage();
    }

    /// Advances time by `n` sync intervals at once (at least one): for a caller that did not
    /// tick while [`ticks_until_due`](Self::ticks_until_due) said nothing was due.
    pub fn handle_ticks(&mut self, n: u64) {
        self.tick += n.saturating_sub(1);
        self.handle_tick();
    }

    /// In how many ticks the protocol next has something to do at a tick: 1 while deltas
    /// are unsent or unacknowledged, a neighbour's limit is unknown or a repair is landing;
    /// else when the next round of digests is due. Ticks before then do nothing but count,
    /// so a caller may sleep through them and pass their number to
    /// [`handle_ticks`](Self::handle_ticks). A message received or a local write may make
    /// something due sooner: ask again after each.
    pub fn ticks_until_due(&self) -> u64 {
        let busy = self.neighbours.values().any(|n| n.needs_ticks(self.head));
        if busy {
            return 1;
        }
        self.rounds.next_round().saturating_sub(self.tick).max(1)
    }

    /// Handles bytes received from neighbour `from`.
    ///
    /// # Errors
    /// [`SyncError`] when the bytes are refused; the state is then unchanged.
    pub fn handle_message(&mut self, from: &P, bytes: &[u8]) -> Result<(), SyncError> {
        self.stats.bytes_received += bytes.len() as u64;
        let known = self.crdt.as_causal().context().dot_count();
        let result = self.dispatch(from, bytes);
        if self.crdt.as_causal().context().dot_count() != known {
            self.events.push_back(SyncEvent::ContextGrew);
        }
        match &result {
            Ok(()) => self.stats.messages_received += 1,
            Err(SyncError::Codec(codec::CodecError::FrameTooLarge { .. })) => {
                self.stats.rejected_messages += 1;
                // It sent more than we accept: it does not know our limit yet (or we lowered
                // it). Say it, so what it resends fits.
                if self.neighbours.contains_key(from) {
                    self.send_hello(from, true);
                }
            }
            Err(_) => self.stats.rejected_messages += 1,
        }
        result
    }

    /// The next message to send, if any. Drain after every `handle_*` and `mutate`.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit<P>> {
        self.transmits.pop_front()
    }

    /// The next warning, if any: conditions the caller should log, each reported once.
    #[must_use]
    pub fn poll_warning(&mut self) -> Option<SyncWarning<P>> {
        self.warnings.pop_front()
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<SyncEvent<C::Key, C::Value>> {
        self.events.pop_front()
    }

    /// Turns on or off the capture of each changed key's previous store: while on, changes
    /// made by neighbours carry their previous stores in [`SyncEvent::StoresChanged`]. Costs one clone of each
    /// changed key's store; off by default.
    pub fn track_previous(&mut self, on: bool) {
        self.previous = on.then(Vec::new);
    }

    /// Says how to read the newest hybrid-logical-clock timestamp in a key's store; from then
    /// on each message that changes keys also reports [`SyncEvent::RemoteTimestamp`] with the
    /// newest timestamp among them.
    pub fn report_timestamps(&mut self, read: fn(&C::Value) -> Option<Timestamp>) {
        self.timestamps = Some(read);
    }

    fn dispatch(&mut self, from: &P, bytes: &[u8]) -> Result<(), SyncError> {
        if !self.neighbours.contains_key(from) {
            return Err(SyncError::UnknownNeighbour);
        }
        let msg: Message<C::Key, C::Value> = codec::decode(bytes, self.config.max_sync_size)?;
        // Validate what could fail before changing anything.
        self.validate(&msg)?;
        if matches!(
            msg,
            Message::Context { .. }
                | Message::Repair { .. }
                | Message::Nodes { .. }
                | Message::Buckets { .. }
                | Message::Removals { .. }
        ) {
            // The repair path is at work with this neighbour: compare often again.
            self.wake_rounds();
        }
        match msg {
            Message::Deltas {
                epoch,
                first,
                last,
                deltas,
            } => self.on_deltas(
                from,
                epoch,
                first,
                last,
                deltas.into_iter().map(WireDelta::unpack).collect(),
            ),
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
            Message::Hello { limit, reply } => self.on_hello(from, limit, reply),
            Message::Removals { ctx, keys } => self.on_removals(from, &ctx, keys),
            Message::Probe { epoch, probe } => self.on_probe(from, epoch, probe),
            Message::ProbeAnswer { epoch, probe, ctx } => {
                self.on_probe_answer(from, epoch, probe, ctx);
            }
            Message::Oversized { key: _, size } => {
                self.stats.entries_too_large_here += 1;
                self.warnings.push_back(SyncWarning::EntryTooLargeHere {
                    peer: from.clone(),
                    size: usize::try_from(size).unwrap_or(usize::MAX),
                });
            }
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
        if origin.is_some() && !self.config.relay {
            return; // The other neighbours hear it from where it came (a full mesh).
        }
        let size = codec::encoded_len(&delta).unwrap_or(usize::MAX);
        // Local writes between two ticks form one delta group (Almeida et al.): joined into
        // the newest buffered delta while no neighbour has been sent it yet. One entry per
        // tick instead of one per write, so the receiver reduces and joins once per group.
        // The group's size is kept as the sum of its parts, an upper bound of its encoding.
        let group_limit = self.group_limit;
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

    /// Sends `peer` the deltas it lacks, as many messages as its window allows: called on
    /// every tick and on every acknowledgement, so throughput follows the acknowledgements
    /// (the link), not the tick. A message unacknowledged for `resend_after_ticks` is sent
    /// again with everything after it (go-back-N: a receiver acknowledges only in order).
    fn send_deltas(&mut self, peer: &P) {
        let limit = self.limit_for(peer);
        let (tick, resend_after) = (self.tick, self.config.resend_after_ticks.max(1));
        let base = self.head - self.buffer.len() as u64;
        let Some(n) = self.neighbours.get_mut(peer) else {
            return;
        };
        if n.limit.is_none() {
            // Its limit is not known yet (its `Hello` is on the way, or it is an old
            // version): the deltas wait in the buffer, the repair path covers an old peer.
            return;
        }
        if n.acked < base {
            // What it lacks left the buffer: the repair path takes it from here, and the
            // digest that starts it may go out at once.
            n.acked = base;
            n.sent_upto = n.sent_upto.max(base);
            n.forget_acked();
        }
        let wait = n
            .resend_ticks
            .max(n.round_trip.timeout(resend_after))
            .min(MAX_RESEND_TICKS.max(resend_after));
        if n.in_flight
            .front()
            .is_some_and(|f| tick.saturating_sub(f.tick) >= wait)
        {
            n.go_back();
            n.resend_ticks = wait
                .saturating_mul(2)
                .min(MAX_RESEND_TICKS.max(resend_after));
            self.stats.delta_resends += 1;
        }
        loop {
            let Some(n) = self.neighbours.get(peer) else {
                return;
            };
            let in_flight: usize = n.in_flight.iter().map(|f| f.bytes).sum();
            // At least one message is always allowed, whatever the window.
            if n.acked >= self.head
                || (in_flight > 0 && in_flight >= self.config.max_in_flight_bytes)
            {
                return;
            }
            let base = self.head - self.buffer.len() as u64;
            let start = (n.sent_upto.max(n.acked) + 1).max(base + 1);
            if start > self.head {
                return;
            }
            let idle = n.in_flight.is_empty();
            let (last, count, group) = self.next_deltas(peer, start, limit);
            let Some(n) = self.neighbours.get_mut(peer) else {
                return;
            };
            if count == 0 {
                if !idle {
                    // Its acknowledgement must follow the messages in flight: wait for them.
                    return;
                }
                // Nothing it lacks in this range: count it as delivered.
                n.acked = n.acked.max(last);
                n.sent_upto = n.sent_upto.max(last);
                continue;
            }
            n.sent_upto = last;
            self.stats.deltas_sent += count;
            let msg = Message::Deltas {
                epoch: self.epoch,
                first: start,
                last,
                deltas: vec![WireDelta::pack(group)],
            };
            let bytes = self.send(peer, &msg);
            if let Some(n) = self.neighbours.get_mut(peer) {
                let resent = start <= n.resent_upto;
                n.in_flight.push_back(InFlight {
                    last,
                    bytes,
                    tick,
                    resent,
                });
            }
        }
    }

    /// The buffered deltas from `start` that fit one message of `limit` bytes to `peer`,
    /// joined into one delta group (a single context for all, and a key written twice is sent
    /// once; joined in place rather than cloned first), with the last sequence number the
    /// message covers and how many deltas it holds.
    fn next_deltas(&mut self, peer: &P, start: u64, limit: usize) -> (u64, u64, Delta<C>) {
        let base = self.head - self.buffer.len() as u64;
        let budget = limit.saturating_sub(ENVELOPE);
        let (mut used, mut last, mut count) = (0usize, start - 1, 0u64);
        let mut group = Causal::empty_delta();
        for b in self.buffer.iter().skip((start - base - 1) as usize) {
            if b.origin.as_ref() == Some(peer) {
                last = b.seq; // never send a delta back where it came from (BP)
                continue;
            }
            if b.size > budget {
                // Left to the repair path, which can send it key by key.
                self.stats.oversized_deltas += 1;
                last = b.seq;
                continue;
            }
            if used + b.size > budget {
                break;
            }
            used += b.size;
            last = b.seq;
            count += 1;
            group.join(&b.delta);
        }
        (last, count, group)
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
        let (head, tick) = (self.head, self.tick);
        if let Some(n) = self.neighbours.get_mut(from) {
            // Acknowledged without a gap: everything before `first` had already arrived (or
            // was given up to the repair path). Otherwise an earlier message was lost and
            // the resend timer covers it.
            if first <= n.acked + 1 {
                n.acked = n.acked.max(last.min(head));
                n.sent_upto = n.sent_upto.max(n.acked);
            }
            // A first copy acknowledged is a round-trip sample, and the receiver keeping up:
            // back to the round-trip timeout. Not for a resend's acknowledgement, which may
            // be the first copy's (Karn's rule): a timeout too short for the receiver would
            // otherwise come back after every acknowledgement.
            if let Some(sent_at) = n.forget_acked() {
                n.round_trip.sample(tick.saturating_sub(sent_at));
                n.resend_ticks = 0;
            }
        }
        // The window has room again: send what is waiting now, not at the next tick.
        self.send_deltas(from);
    }

    fn on_hello(&mut self, from: &P, limit: u64, reply: bool) {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX).max(1);
        if let Some(n) = self.neighbours.get_mut(from) {
            let assumed = n.limit.unwrap_or(UNKNOWN_PEER_LIMIT);
            if n.limit != Some(limit) {
                n.oversized.clear(); // report against the new limit
            }
            if limit < assumed {
                // What is in flight may have been refused: send it again, within the limit.
                n.go_back();
            }
            n.limit = Some(limit);
        }
        self.group_limit = self.smallest_limit() / 4;
        if !reply {
            self.send_hello(from, true);
        }
        // Deltas may have waited for this.
        self.send_deltas(from);
    }

    pub(super) fn send_hello(&mut self, to: &P, reply: bool) {
        let limit = self.config.max_sync_size as u64;
        self.send(to, &Message::Hello { limit, reply });
    }

    /// The largest message `peer` may be sent: the smaller of the two limits.
    pub(super) fn limit_for(&self, peer: &P) -> usize {
        let theirs = self
            .neighbours
            .get(peer)
            .and_then(|n| n.limit)
            .unwrap_or(UNKNOWN_PEER_LIMIT);
        self.config.max_sync_size.min(theirs)
    }

    /// The smallest limit among this replica and its neighbours; 0 while a neighbour has not
    /// said its limit (then local writes are not grouped: a group formed now might not fit
    /// the limit it is about to announce).
    fn smallest_limit(&self) -> usize {
        self.neighbours
            .values()
            .map(|n| n.limit.unwrap_or(0))
            .fold(self.config.max_sync_size, usize::min)
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
                n.forget_acked();
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

    /// Reports the keys a message changed, with the stores captured before if tracking is on,
    /// and the newest timestamp they now hold.
    pub(super) fn emit_changed(&mut self, changed: Vec<C::Key>) {
        let captured = self.previous.as_mut().map(std::mem::take);
        if changed.is_empty() {
            return;
        }
        let newest = self.timestamps.and_then(|read| {
            let store = self.crdt.as_causal().store();
            changed
                .iter()
                .filter_map(|k| store.get(k).and_then(read))
                .max()
        });
        let changes = match captured {
            None => Changes {
                keys: changed,
                previous: None,
            },
            Some(captured) => {
                let changed: std::collections::HashSet<&C::Key> = changed.iter().collect();
                let mut seen = std::collections::HashSet::new();
                let (mut keys, mut previous) = (Vec::new(), Vec::new());
                for (key, before) in captured {
                    if changed.contains(&key) && seen.insert(key.clone()) {
                        keys.push(key);
                        previous.push(before);
                    }
                }
                Changes {
                    keys,
                    previous: Some(previous),
                }
            }
        };
        self.events.push_back(SyncEvent::StoresChanged(changes));
        if let Some(newest) = newest {
            self.events.push_back(SyncEvent::RemoteTimestamp(newest));
        }
    }

    /// Encodes and queues `msg` for `to`, within `to`'s limit; returns its size (0 if it was
    /// dropped as unsendable).
    pub(super) fn send(&mut self, to: &P, msg: &Message<C::Key, C::Value>) -> usize {
        match codec::encode(msg, self.limit_for(to)) {
            Ok(bytes) => {
                let len = bytes.len();
                self.stats.bytes_sent += len as u64;
                self.stats.messages_sent += 1;
                self.transmits.push_back(Transmit {
                    to: to.clone(),
                    bytes,
                });
                len
            }
            // Budgets keep messages under the limit; one that is not is dropped, and what it
            // carried is repaired later.
            Err(_) => {
                self.stats.unsendable_messages += 1;
                0
            }
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
}
