use super::Timestamp;
use thiserror::Error;

/// Why a remote timestamp was refused. The clock is unchanged when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClockError {
    /// The remote timestamp is further ahead of our wall clock than the configured bound.
    /// Adopting it would drag every later local timestamp into the future, so that a
    /// misconfigured node could win every last-writer-wins conflict. Nothing was changed.
    #[error(
        "remote timestamp {remote} is {ahead_ms} ms ahead of the local wall clock (bound: {max_drift_ms} ms)"
    )]
    TooFarAhead {
        /// The refused timestamp.
        remote: Timestamp,
        /// How far ahead of `wall_ms` it was.
        ahead_ms: u64,
        /// The configured bound.
        max_drift_ms: u64,
    },
}

/// A hybrid logical clock.
///
/// * [`Hlc::now`] stamps a local event: the result is greater than every timestamp this clock
///   returned or observed before, and close to the wall clock when the wall clock is sane.
/// * [`Hlc::observe`] merges a timestamp received from another replica, so that later local
///   events are ordered after it (causality), unless it is implausibly far in the future.
///
/// # Examples
/// ```
/// use herd::clock::{Hlc, Timestamp};
/// let mut clock = Hlc::new(60_000);
/// let a = clock.now(1_000);
/// let b = clock.now(900); // the wall clock stepped back 100 ms
/// assert!(b > a);
/// clock.observe(1_000, Timestamp::new(5_000, 7)).unwrap();
/// assert!(clock.now(1_000) > Timestamp::new(5_000, 7));
/// assert!(clock.observe(1_000, Timestamp::new(999_999, 0)).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct Hlc {
    last: Timestamp,
    max_drift_ms: u64,
}

impl Hlc {
    /// Default bound on how far ahead of our wall clock a remote timestamp may be: one minute.
    pub const DEFAULT_MAX_DRIFT_MS: u64 = 60_000;

    /// A clock that refuses remote timestamps more than `max_drift_ms` ahead of the wall clock.
    pub fn new(max_drift_ms: u64) -> Self {
        Hlc {
            last: Timestamp::ZERO,
            max_drift_ms,
        }
    }

    /// A clock that resumes after `last` (e.g. the highest timestamp found in persisted state),
    /// so a restarted replica never reissues a timestamp.
    pub fn resume(last: Timestamp, max_drift_ms: u64) -> Self {
        Hlc { last, max_drift_ms }
    }

    /// The last timestamp this clock returned or observed.
    pub fn last(&self) -> Timestamp {
        self.last
    }

    /// Stamps a local event at wall-clock time `wall_ms`.
    pub fn now(&mut self, wall_ms: u64) -> Timestamp {
        let wall = wall_ms.min(Timestamp::MAX_WALL_MS);
        self.last = if wall > self.last.wall_ms() {
            Timestamp::new(wall, 0)
        } else {
            successor(self.last)
        };
        self.last
    }

    /// Merges `remote`, received at wall-clock time `wall_ms`, and returns the timestamp of the
    /// receive event.
    ///
    /// # Errors
    /// [`ClockError::TooFarAhead`] when `remote` is more than the drift bound ahead of `wall_ms`;
    /// the clock is then unchanged.
    pub fn observe(&mut self, wall_ms: u64, remote: Timestamp) -> Result<Timestamp, ClockError> {
        let wall = wall_ms.min(Timestamp::MAX_WALL_MS);
        let ahead_ms = remote.wall_ms().saturating_sub(wall);
        if ahead_ms > self.max_drift_ms {
            return Err(ClockError::TooFarAhead {
                remote,
                ahead_ms,
                max_drift_ms: self.max_drift_ms,
            });
        }
        let newest = self.last.max(remote);
        self.last = if wall > newest.wall_ms() {
            Timestamp::new(wall, 0)
        } else {
            successor(newest)
        };
        Ok(self.last)
    }
}

impl Default for Hlc {
    fn default() -> Self {
        Hlc::new(Self::DEFAULT_MAX_DRIFT_MS)
    }
}

/// The next timestamp after `t`: bump the logical counter, or borrow the next millisecond when
/// 65,536 events already share this one. Saturates at the largest timestamp.
fn successor(t: Timestamp) -> Timestamp {
    Timestamp::from_u64(t.as_u64().saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Event {
        Local(u64),
        Remote(u64, u64),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (0u64..10_000).prop_map(Event::Local),
            (0u64..10_000, 0u64..(20_000u64 << 16)).prop_map(|(w, r)| Event::Remote(w, r)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever the wall clock does (step back, stand still), timestamps strictly increase,
        /// and a refused remote timestamp leaves the clock as it was.
        #[test]
        fn monotone_and_refusal_changes_nothing(events in proptest::collection::vec(event(), 1..64)) {
            let mut clock = Hlc::new(5_000);
            let mut last = Timestamp::ZERO;
            for e in events {
                match e {
                    Event::Local(w) => {
                        let t = clock.now(w);
                        prop_assert!(t > last);
                        prop_assert!(t.wall_ms() >= w.min(Timestamp::MAX_WALL_MS));
                        last = t;
                    }
                    Event::Remote(w, raw) => {
                        let remote = Timestamp::from_u64(raw);
                        let before = clock.last();
                        match clock.observe(w, remote) {
                            Ok(t) => {
                                prop_assert!(t > last && t > remote);
                                last = t;
                            }
                            Err(ClockError::TooFarAhead { ahead_ms, .. }) => {
                                prop_assert!(ahead_ms > 5_000);
                                prop_assert_eq!(clock.last(), before);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn logical_overflow_borrows_the_next_millisecond() {
        let mut clock = Hlc::resume(Timestamp::new(7, u16::MAX), 1_000);
        let t = clock.now(7);
        assert_eq!((t.wall_ms(), t.logical()), (8, 0));
    }

    #[test]
    fn future_bound_is_inclusive() {
        let mut clock = Hlc::new(100);
        assert!(clock.observe(1_000, Timestamp::new(1_100, 0)).is_ok());
        assert!(clock.observe(1_000, Timestamp::new(1_101, 0)).is_err());
    }
}
