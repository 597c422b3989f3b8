use crate::merkle::Shape;

/// Tuning of the sync protocol. Fields are public; [`SyncConfig::default`] documents the
/// defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// Upper bound on every encoded message, in bytes. Default 1 MiB: far below ractor_cluster's
    /// 16 MiB inbound frame cap (an oversized frame tears down the whole session there).
    /// A divergence larger than this is repaired in several messages.
    pub max_sync_size: usize,
    /// Ticks to wait for an acknowledgement before sending unacknowledged deltas again.
    /// Default 3.
    pub resend_after_ticks: u64,
    /// Deltas kept for neighbours that have not acknowledged them. A neighbour that falls
    /// further behind is repaired by the Merkle path instead. Default 100,000.
    pub max_buffered_deltas: usize,
    /// Ticks between anti-entropy digests to each neighbour (when no delta is in flight to it).
    /// Default 1.
    pub digest_every_ticks: u64,
    /// Ticks to hold further digests to a neighbour after sending it a repair, so the repair
    /// lands before the next comparison. Default 2.
    pub repair_cooldown_ticks: u64,
    /// The Merkle tree's shape; must be the same on every replica. Default 16-way, 4 levels.
    pub shape: Shape,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            max_sync_size: 1 << 20,
            resend_after_ticks: 3,
            max_buffered_deltas: 100_000,
            digest_every_ticks: 1,
            repair_cooldown_ticks: 2,
            shape: Shape::default(),
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
}
