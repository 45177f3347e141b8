//! When a call tries again, and after how long: a pure policy, so that its
//! decisions are tested exactly; [`super::link`] does the waiting.

use std::time::Duration;

/// Leader hints followed in a row without pausing.
pub const REDIRECTS_UNPAUSED_MAX: u32 = 3;

/// The retry state of one call: exponential backoff with jitter, and a bound
/// on leader hints followed without a pause (stale hints can point in
/// circles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    backoff: Duration,
    backoff_max: Duration,
    attempts: u32,
    redirects: u32,
}

impl Retry {
    /// A call's first attempt is about to be made.
    pub fn new(backoff_initial: Duration, backoff_max: Duration) -> Retry {
        Retry {
            backoff: backoff_initial,
            backoff_max,
            attempts: 0,
            redirects: 0,
        }
    }

    /// Counts an attempt; returns how many have been made.
    pub fn attempt(&mut self) -> u32 {
        self.attempts += 1;
        self.attempts
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// A member redirected the call to the leader it knows: whether to try
    /// there at once (`time_left`: the deadline has not passed). After
    /// [`REDIRECTS_UNPAUSED_MAX`] hints in a row the call pauses as after any
    /// failure, and the count starts again.
    pub fn redirect_now(&mut self, time_left: bool) -> bool {
        self.redirects += 1;
        if self.redirects <= REDIRECTS_UNPAUSED_MAX && time_left {
            return true;
        }
        self.redirects = 0;
        false
    }

    /// The largest jitter of the next pause, in microseconds: half the
    /// backoff.
    pub fn jitter_max_us(&self) -> u64 {
        self.backoff.as_micros() as u64 / 2
    }

    /// The pause before the next attempt, given `jitter_us` drawn up to
    /// [`Retry::jitter_max_us`]; `None` when no attempt would fit in the
    /// `remaining` time, so the call should give up now. Each pause doubles
    /// the backoff, up to its maximum.
    pub fn pause(&mut self, jitter_us: u64, remaining: Duration) -> Option<Duration> {
        assert!(jitter_us <= self.jitter_max_us(), "jitter beyond its bound");
        let pause = self.backoff + Duration::from_micros(jitter_us);
        if pause >= remaining {
            return None;
        }
        self.backoff = (self.backoff * 2).min(self.backoff_max);
        Some(pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn backoff_doubles_up_to_its_maximum() {
        let mut retry = Retry::new(10 * MS, 50 * MS);
        let pauses: Vec<Duration> = (0..5)
            .map(|_| retry.pause(0, Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(pauses, [10 * MS, 20 * MS, 40 * MS, 50 * MS, 50 * MS]);
    }

    #[test]
    fn jitter_is_added_and_bounded_by_half_the_backoff() {
        let mut retry = Retry::new(10 * MS, 50 * MS);
        assert_eq!(retry.jitter_max_us(), 5_000);
        assert_eq!(retry.pause(5_000, Duration::from_secs(1)), Some(15 * MS));
        assert_eq!(retry.jitter_max_us(), 10_000);
    }

    #[test]
    fn gives_up_when_the_pause_would_outlast_the_deadline() {
        let mut retry = Retry::new(10 * MS, 50 * MS);
        assert_eq!(
            retry.pause(0, 10 * MS),
            None,
            "a pause must end before the deadline"
        );
        assert_eq!(retry.pause(0, 11 * MS), Some(10 * MS));
        assert_eq!(retry.pause(3_000, 23 * MS), None, "jitter counts");
    }

    #[test]
    fn a_few_redirects_are_followed_at_once_then_it_pauses() {
        let mut retry = Retry::new(10 * MS, 50 * MS);
        let now: Vec<bool> = (0..9).map(|_| retry.redirect_now(true)).collect();
        assert_eq!(
            now,
            [true, true, true, false, true, true, true, false, true]
        );
        assert!(!retry.redirect_now(false), "never past the deadline");
    }

    #[test]
    fn attempts_are_counted() {
        let mut retry = Retry::new(MS, MS);
        assert_eq!((retry.attempt(), retry.attempt()), (1, 2));
        assert_eq!(retry.attempts(), 2);
    }
}
