//! How long to wait before trying a remote again (etcd, a federation peer): exponential,
//! capped, with jitter, so that replicas that lost it together do not come back in step.
//! Pure apart from [`jitter`].

use std::time::Duration;

/// Waits that double from `base` up to `cap`; each is drawn between half and all of that.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// Things work again: the next wait starts from `base`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The next wait, for a `jitter` in `[0, 1]` (clamped): between half and all of
    /// `base · 2^attempts`, never more than `cap`.
    pub fn next(&mut self, jitter: f64) -> Duration {
        let full = self
            .base
            .saturating_mul(1u32.checked_shl(self.attempt).unwrap_or(u32::MAX))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1).min(31);
        full.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
    }
}

/// A random number in `[0, 1)` for [`Backoff::next`] (from the standard library's
/// per-process random hash keys; jitter needs no better).
pub fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
        let full: Vec<Duration> = (0..10).map(|_| b.next(1.0)).collect();
        assert_eq!(full[0], Duration::from_millis(250));
        assert_eq!(full[1], Duration::from_millis(500));
        assert_eq!(full[7], Duration::from_secs(30));
        assert_eq!(full[9], Duration::from_secs(30));
        b.reset();
        assert_eq!(b.next(0.0), Duration::from_millis(125), "half at the least");
        for _ in 0..100 {
            b.next(0.5);
        }
        assert!(b.next(1.0) <= Duration::from_secs(30));
    }

    #[test]
    fn jitter_is_a_fraction() {
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }
}
