use crate::merkle::Shape;

/// Tuning of the sync protocol. Fields are public; [`SyncConfig::default`] documents the
/// defaults.
///
/// Neighbours need not agree on any of these except [`shape`](Self::shape): each replica
/// tells its neighbours its [`max_sync_size`](Self::max_sync_size), and a sender never sends
/// a neighbour a message larger than the smaller of the two limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// Upper bound on every encoded message this replica sends or accepts, in bytes. Default
    /// 1 MiB: far below ractor_cluster's 16 MiB inbound frame cap (an oversized frame tears
    /// down the whole session there).
    ///
    /// It bounds the memory one message takes, not the throughput: a divergence larger than
    /// this is repaired in several messages, up to
    /// [`max_in_flight_bytes`](Self::max_in_flight_bytes) of them in flight at once. One
    /// key's entries must fit one message ([`SyncConfig::max_entry_size`]); a key that does
    /// not fit a neighbour's smaller limit is reported, never resent in a loop.
    pub max_sync_size: usize,
    /// Bytes of delta messages in flight (sent, not yet acknowledged) to one neighbour, and
    /// bytes of one burst of repair messages. More is sent as acknowledgements come back, so
    /// throughput is set by the link, not by `max_sync_size` per tick. At least one message
    /// is always allowed. Default 4 MiB.
    pub max_in_flight_bytes: usize,
    /// The fewest ticks to wait for an acknowledgement before sending unacknowledged deltas
    /// again. The wait follows each neighbour's measured round trip (smoothed, plus four
    /// mean deviations, as TCP's retransmission timeout), so a receiver that is slow, not
    /// gone, is not sent the same window again; this is its floor, and the wait before the
    /// first acknowledgement. Default 3.
    pub resend_after_ticks: u64,
    /// Deltas kept for neighbours that have not acknowledged them. A neighbour that falls
    /// further behind is repaired by the Merkle path instead. Default 100,000.
    pub max_buffered_deltas: usize,
    /// Ticks between rounds of anti-entropy digests while the replica is active (its state
    /// changed, or a neighbour showed a difference, since the last round). Default 1.
    pub digest_every_ticks: u64,
    /// The most ticks between rounds of digests: while nothing changes, the interval doubles
    /// from `digest_every_ticks` up to this, and snaps back at the next change, the next sign
    /// of a difference, or a new neighbour. A converged, idle replica then sends
    /// `digest_fanout` digests every this many ticks, however many neighbours it has.
    /// Default 64 (3.2 s at 50 ms ticks, near Akka Distributed Data's 2 s gossip): deltas are
    /// acknowledged and resent, so idle rounds only look for differences nothing announced;
    /// at 16, the rounds of a node's idle replicas were most of its idle messages.
    pub max_digest_interval_ticks: u64,
    /// Neighbours sent a digest per round, at most: the next ones in a rotation (new
    /// neighbours first), skipping those with deltas in flight or a repair landing. Every
    /// pair is then compared within ⌈neighbours / `digest_fanout`⌉ rounds, and a replica's
    /// anti-entropy traffic does not grow with the number of neighbours. Deltas still go to
    /// every neighbour at once. Default 3.
    pub digest_fanout: usize,
    /// The fewest ticks to wait to hear that a repair landed before asking again. After a
    /// repair burst a replica sends the neighbour a probe and no digest or further burst
    /// until the probe is answered (the answer comes after the burst was applied); the wait
    /// for the answer follows the measured round trip, with this as its floor, and doubles
    /// at each probe sent again. Default 2.
    pub repair_cooldown_ticks: u64,
    /// The Merkle tree's shape; must be the same on every replica. Default 16-way, 4 levels.
    pub shape: Shape,
    /// Send a local write at once ([`SyncState::flush`](super::SyncState::flush)) to every
    /// neighbour with nothing in flight, instead of at the next tick; writes made while a
    /// message is in flight group until it is acknowledged, as in Nagle's algorithm. Lower
    /// latency at low write rates (configuration, names); more, smaller messages at high ones.
    /// Default off: deltas leave on ticks and acknowledgements.
    pub send_when_idle: bool,
    /// Pass what a neighbour sent (deltas, and keys a repair changed) on to the other
    /// neighbours. Needed when neighbours do not all see each other (a chain, a ring, hand-set
    /// neighbours); wasted in a full mesh, where every neighbour already sends its writes to
    /// every other and each write would then arrive, be decoded and be dropped as redundant
    /// once more per extra neighbour. Without relay, a neighbour that cannot reach another
    /// still converges through the repair path. Default on; replicas whose neighbours follow
    /// cluster membership (a full mesh) turn it off.
    pub relay: bool,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            max_sync_size: 1 << 20,
            max_in_flight_bytes: 4 << 20,
            resend_after_ticks: 3,
            max_buffered_deltas: 100_000,
            digest_every_ticks: 1,
            max_digest_interval_ticks: 64,
            digest_fanout: 3,
            repair_cooldown_ticks: 2,
            shape: Shape::default(),
            send_when_idle: false,
            relay: true,
        }
    }
}

impl SyncConfig {
    /// A configuration for tests and simulations: small messages, so that large divergences
    /// take many bounded rounds.
    pub fn small_messages(max_sync_size: usize) -> Self {
        SyncConfig {
            max_sync_size,
            ..SyncConfig::default()
        }
    }

    /// The largest encoded entry (one key with all its entries, as `(key, store)`) that can
    /// always be shipped to a neighbour with the same limit, however large the causal context
    /// has grown: a repair sends such an entry alone, with no context. A write whose entry is
    /// larger could be accepted locally but never repaired, so the replica refuses it.
    pub fn max_entry_size(&self) -> usize {
        max_entry_size(self.max_sync_size)
    }
}

/// [`SyncConfig::max_entry_size`] for a given message limit.
pub(super) fn max_entry_size(max_sync_size: usize) -> usize {
    max_sync_size.saturating_sub(super::state::ENVELOPE)
}
