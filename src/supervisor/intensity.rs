//! The restart-intensity limit of one child, as OTP's `max_restarts` within `max_seconds`:
//! local to the node that runs the child.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Recent restarts (and failed starts) of one child.
#[derive(Debug, Default)]
pub(crate) struct Intensity {
    at: VecDeque<Instant>,
}

impl Intensity {
    /// Records a restart at `now`; returns `true` if that makes more than `max` within
    /// `window`, i.e. the child must be given up.
    pub(crate) fn exceeded(&mut self, now: Instant, max: u32, window: Duration) -> bool {
        self.at.push_back(now);
        while let Some(first) = self.at.front() {
            if now.duration_since(*first) > window {
                self.at.pop_front();
            } else {
                break;
            }
        }
        self.at.len() > max as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_than_max_within_the_window_is_exceeded() {
        let t = Instant::now();
        let mut i = Intensity::default();
        let w = Duration::from_secs(5);
        assert!(!i.exceeded(t, 2, w));
        assert!(!i.exceeded(t + Duration::from_secs(1), 2, w));
        assert!(i.exceeded(t + Duration::from_secs(2), 2, w));
    }

    #[test]
    fn old_restarts_fall_out_of_the_window() {
        let t = Instant::now();
        let mut i = Intensity::default();
        let w = Duration::from_secs(5);
        assert!(!i.exceeded(t, 1, w));
        assert!(!i.exceeded(t + Duration::from_secs(6), 1, w));
        assert!(!i.exceeded(t + Duration::from_secs(12), 1, w));
    }

    #[test]
    fn zero_restarts_allowed_fails_at_once() {
        let mut i = Intensity::default();
        assert!(i.exceeded(Instant::now(), 0, Duration::from_secs(5)));
    }
}
