use serde::{Deserialize, Serialize};
use std::fmt;

/// A hybrid logical timestamp: 48 bits of wall-clock milliseconds and a 16-bit logical counter,
/// packed in one `u64` so that comparing timestamps is comparing integers.
///
/// 48 bits of milliseconds last until the year 10889; the logical counter orders up to 65,536
/// events within one millisecond (past that, [`Hlc`](super::Hlc) borrows from the next millisecond).
///
/// # Examples
/// ```
/// use herd::clock::Timestamp;
/// let a = Timestamp::new(1_000, 0);
/// let b = Timestamp::new(1_000, 1);
/// assert!(a < b);
/// assert_eq!(b.wall_ms(), 1_000);
/// assert_eq!(b.logical(), 1);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The smallest timestamp.
    pub const ZERO: Timestamp = Timestamp(0);
    /// The largest wall-clock value a timestamp can carry, in milliseconds.
    pub const MAX_WALL_MS: u64 = (1 << 48) - 1;

    /// Packs a wall-clock reading and a logical counter. Wall-clock bits above 48 are dropped.
    pub const fn new(wall_ms: u64, logical: u16) -> Self {
        Timestamp(((wall_ms & Self::MAX_WALL_MS) << 16) | logical as u64)
    }

    /// Rebuilds a timestamp from [`Timestamp::as_u64`].
    pub const fn from_u64(raw: u64) -> Self {
        Timestamp(raw)
    }

    /// The packed representation: ordering the integers orders the timestamps.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Milliseconds since the Unix epoch.
    pub const fn wall_ms(self) -> u64 {
        self.0 >> 16
    }

    /// The logical counter within [`Timestamp::wall_ms`].
    pub const fn logical(self) -> u16 {
        (self.0 & 0xffff) as u16
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.wall_ms(), self.logical())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
