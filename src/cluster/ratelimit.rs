//! Rate-limited logging: a peer sending garbage or dialing with a wrong cookie must not be
//! able to fill the disk with log lines (100,000 garbage frames once wrote 25,000 WARN lines).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::lock;

/// Lets one log line through per period and counts the ones held back.
#[derive(Debug)]
pub(crate) struct RateLimited {
    every: Duration,
    last: Mutex<Option<Instant>>,
    held: AtomicU64,
}

impl RateLimited {
    pub(crate) fn new(every: Duration) -> Self {
        RateLimited {
            every,
            last: Mutex::new(None),
            held: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a line may be logged now (`n` lines were held back since the last
    /// one), `None` when this one must be held back.
    pub(crate) fn allow(&self, now: Instant) -> Option<u64> {
        let mut last = lock(&self.last);
        match *last {
            Some(t) if now.saturating_duration_since(t) < self.every => {
                self.held.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                *last = Some(now);
                Some(self.held.swap(0, Ordering::Relaxed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_with_the_count_held_back() {
        let r = RateLimited::new(Duration::from_secs(1));
        let t = Instant::now();
        assert_eq!(r.allow(t), Some(0));
        for i in 1..=1000 {
            assert_eq!(r.allow(t + Duration::from_micros(i)), None);
        }
        assert_eq!(r.allow(t + Duration::from_secs(1)), Some(1000));
        assert_eq!(r.allow(t + Duration::from_millis(1500)), None);
    }
}
