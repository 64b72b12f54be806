//! The one retry policy of every loop that waits for something to come back (the MQTT broker, a
//! camera stream, the vision worker, the Kubernetes API, an S3 store, a delegation member):
//! capped exponential backoff with jitter, so that many boxes that lost the same link do not come
//! back at the same instant. Pure: computes waits, sleeps nowhere.

use std::time::Duration;

use rand::Rng;

/// How a loop backs off: the first wait, the cap, and the jitter (a fraction of each wait).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub initial: Duration,
    pub max: Duration,
    /// Each wait is scaled by a random factor in `1 ± jitter` (and never exceeds `max`).
    pub jitter: f64,
}

impl Policy {
    /// Doubling from `initial` up to `max`, ±20% jitter.
    pub const fn new(initial: Duration, max: Duration) -> Policy {
        Policy {
            initial,
            max,
            jitter: 0.2,
        }
    }

    /// The wait before try `attempt` (1-based; 0 counts as 1).
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max);
        let j = self.jitter.clamp(0.0, 0.99);
        let factor = if j > 0.0 {
            rand::thread_rng().gen_range(1.0 - j..1.0 + j)
        } else {
            1.0
        };
        // In float seconds: a wait near Duration::MAX times 1.2 must not overflow.
        Duration::try_from_secs_f64(base.as_secs_f64() * factor)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// A fresh sequence of waits under this policy.
    pub fn start(self) -> Backoff {
        Backoff {
            policy: self,
            attempt: 0,
        }
    }
}

/// A loop's place in its policy: `next_wait()` after each failure, `reset()` after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: Policy,
    attempt: u32,
}

impl Backoff {
    /// The wait before the next try; each call waits about twice as long, up to the cap.
    pub fn next_wait(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        self.policy.delay(self.attempt)
    }

    /// Back to the first wait (the thing came back).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_the_first_stay_under_the_cap_and_are_jittered() {
        let p = Policy::new(Duration::from_millis(500), Duration::from_secs(30));
        for n in 1..200u32 {
            let d = p.delay(n);
            let base = (0.5 * 2f64.powi(n.min(40) as i32 - 1)).min(30.0);
            assert!(d.as_secs_f64() >= base * 0.8 - 1e-9, "{n}: {d:?} under {base}");
            assert!(
                d.as_secs_f64() <= (base * 1.2).min(30.0) + 1e-9,
                "{n}: {d:?} over"
            );
        }
        let first = p.delay(0);
        assert!(
            first >= Duration::from_millis(400) && first <= Duration::from_millis(600),
            "{first:?}"
        );
        // The jitter is real: 100 waits of the same try are not all equal.
        let waits: std::collections::BTreeSet<_> = (0..100).map(|_| p.delay(3)).collect();
        assert!(waits.len() > 1);
    }

    #[test]
    fn a_sequence_grows_then_resets() {
        let p = Policy {
            jitter: 0.0,
            ..Policy::new(Duration::from_secs(1), Duration::from_secs(5))
        };
        let mut b = p.start();
        let waits: Vec<u64> = (0..5).map(|_| b.next_wait().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        assert_eq!(b.failures(), 5);
        b.reset();
        assert_eq!(b.next_wait(), Duration::from_secs(1));
    }

    #[test]
    fn huge_attempt_counts_and_caps_do_not_overflow() {
        let p = Policy::new(Duration::from_secs(u64::MAX / 4), Duration::MAX);
        assert!(p.delay(u32::MAX) <= Duration::MAX);
        let mut b = Policy::new(Duration::ZERO, Duration::ZERO).start();
        assert_eq!(b.next_wait(), Duration::ZERO);
    }
}
