//! A rate limiter with the semantics of Reverb's `SampleToInsertRatio` (reverb/rate_limiters.py and
//! reverb/cc/rate_limiter.cc): the learner's sampled transitions per inserted transition stay in a band.
//!
//! With `I` transitions inserted and `S` transitions sampled, `diff = I * samples_per_insert - S`. Reverb centres
//! the band on `offset = min_size_to_sample * samples_per_insert` and lets `diff` move `error_buffer` either way:
//! `min_diff = offset - error_buffer`, `max_diff = offset + error_buffer`.
//!
//! * An insert of `k` transitions is allowed while `I + k <= min_size_to_sample` (warm-up) or
//!   `(I + k) * samples_per_insert - S <= max_diff`; otherwise the actors wait (the learner stops draining the
//!   bounded channel, so the actors block on their sends).
//! * A sample of `k` transitions is allowed once `I >= min_size_to_sample` and `diff - k >= min_diff`; otherwise the
//!   learner waits for data.
//!
//! Either side can be switched off ([`RateLimit::block_actors`], [`RateLimit::block_learner`]).
//!
//! ```
//! use bellman_agents::actors::{RateLimit, RateLimiter};
//! let cfg = RateLimit { samples_per_insert: 4.0, min_size_to_sample: 100, error_buffer: 64.0, ..RateLimit::default() };
//! let mut lim = RateLimiter::new(cfg, 32).unwrap();
//! assert!(!lim.can_sample(32)); // warm-up: 100 transitions first
//! for _ in 0..100 { assert!(lim.can_insert(1)); lim.inserted(1); }
//! assert!(lim.can_sample(32));
//! // diff = 400 now; the band is [400 - 64, 400 + 64]: 16 more inserts fill it.
//! for _ in 0..16 { lim.inserted(1); }
//! assert!(!lim.can_insert(1));
//! lim.sampled(32);
//! assert!(lim.can_insert(1));
//! ```
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};

/// Configuration of the [`RateLimiter`] (Reverb's `SampleToInsertRatio` parameters plus which side blocks).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimit {
    /// Target number of sampled transitions per inserted transition (> 0). Single-process DQN's ratio is
    /// `batch_size * gradient_steps / (train_freq * n_envs)`: 32 * 1 / 4 = 8 with SB3's defaults (the default here).
    pub samples_per_insert: f64,
    /// Transitions to insert before the first sample (>= the learner's sample batch).
    pub min_size_to_sample: u64,
    /// Half-width of the band of `diff` around its target, in samples; must be at least
    /// `(sample_batch + samples_per_insert) / 2` so that one side can always move.
    pub error_buffer: f64,
    /// Actors wait (backpressure on the channel) when the learner is too far behind (default true).
    pub block_actors: bool,
    /// The learner waits for data when it is too far ahead (default true).
    pub block_learner: bool,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            samples_per_insert: 8.0,
            min_size_to_sample: 1000,
            error_buffer: 1000.0,
            block_actors: true,
            block_learner: true,
        }
    }
}

impl RateLimit {
    /// Checks the values for a learner that samples `sample_batch` transitions per update; the error names the
    /// field, its value and the accepted range.
    pub fn validate(&self, sample_batch: usize) -> Result<()> {
        let spi = self.samples_per_insert;
        if !(spi.is_finite() && spi > 0.0) {
            return Err(AgentError::Config(format!("samples_per_insert = {spi}: must be a finite number > 0")));
        }
        if sample_batch == 0 {
            return Err(AgentError::Config("sample batch = 0: must be >= 1".into()));
        }
        if self.min_size_to_sample < sample_batch as u64 {
            return Err(AgentError::Config(format!(
                "min_size_to_sample = {}: must be >= the sample batch ({sample_batch})",
                self.min_size_to_sample
            )));
        }
        // Deadlock freedom: inserts blocked means diff > max_diff - spi, samples blocked means
        // diff < min_diff + batch; both at once needs max_diff - min_diff < batch + spi.
        let need = (sample_batch as f64 + spi) / 2.0;
        if !(self.error_buffer.is_finite() && self.error_buffer >= need) {
            return Err(AgentError::Config(format!(
                "error_buffer = {}: must be >= (sample batch + samples_per_insert) / 2 = {need} (else the learner and \
                 the actors can both be blocked)",
                self.error_buffer
            )));
        }
        Ok(())
    }
}

/// The state of a [`RateLimit`]: counts of inserted and sampled transitions.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    cfg: RateLimit,
    inserts: u64,
    samples: u64,
    min_diff: f64,
    max_diff: f64,
    /// Smallest and largest `diff` seen after the warm-up (for tests and metrics).
    seen: Option<(f64, f64)>,
}

impl RateLimiter {
    /// A limiter for a learner sampling `sample_batch` transitions per update (validated, see
    /// [`RateLimit::validate`]).
    pub fn new(cfg: RateLimit, sample_batch: usize) -> Result<Self> {
        cfg.validate(sample_batch)?;
        // reverb/rate_limiters.py, SampleToInsertRatio.__init__: offset = samples_per_insert * min_size_to_sample.
        let offset = cfg.samples_per_insert * cfg.min_size_to_sample as f64;
        Ok(RateLimiter {
            cfg,
            inserts: 0,
            samples: 0,
            min_diff: offset - cfg.error_buffer,
            max_diff: offset + cfg.error_buffer,
            seen: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RateLimit {
        &self.cfg
    }

    /// `inserts * samples_per_insert - samples`.
    pub fn diff(&self) -> f64 {
        self.inserts as f64 * self.cfg.samples_per_insert - self.samples as f64
    }

    /// The band `[min_diff, max_diff]` that `diff` is kept in (after the warm-up).
    pub fn band(&self) -> (f64, f64) {
        (self.min_diff, self.max_diff)
    }

    /// Smallest and largest `diff` seen after the warm-up, `None` before.
    pub fn seen_range(&self) -> Option<(f64, f64)> {
        self.seen
    }

    /// Transitions inserted so far.
    pub fn inserts(&self) -> u64 {
        self.inserts
    }

    /// Transitions sampled so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Whether `k` more transitions may be inserted now.
    pub fn can_insert(&self, k: u64) -> bool {
        if !self.cfg.block_actors || self.inserts + k <= self.cfg.min_size_to_sample {
            return true;
        }
        (self.inserts + k) as f64 * self.cfg.samples_per_insert - self.samples as f64 <= self.max_diff
    }

    /// How many of `want` transitions may be inserted now (the largest `k <= want` with `can_insert(k)`), so that
    /// a batch is checked once instead of per transition.
    ///
    /// ```
    /// use bellman_agents::actors::{RateLimit, RateLimiter};
    /// let cfg = RateLimit { samples_per_insert: 4.0, min_size_to_sample: 100, error_buffer: 64.0, ..RateLimit::default() };
    /// let lim = RateLimiter::new(cfg, 32).unwrap();
    /// assert_eq!(lim.insert_allowance(1000), 116); // (400 + 64) / 4
    /// assert_eq!(lim.insert_allowance(10), 10);
    /// ```
    pub fn insert_allowance(&self, want: u64) -> u64 {
        if !self.cfg.block_actors || self.inserts.saturating_add(want) <= self.cfg.min_size_to_sample {
            return want;
        }
        // (inserts + k) * spi - samples <= max_diff, floored; then stepped to the exact float comparison.
        let bound = ((self.max_diff + self.samples as f64) / self.cfg.samples_per_insert).floor();
        let mut k = if bound > self.inserts as f64 { (bound as u64 - self.inserts).min(want) } else { 0 };
        k = k.max(self.cfg.min_size_to_sample.saturating_sub(self.inserts).min(want));
        while k < want && self.can_insert(k + 1) {
            k += 1;
        }
        while k > 0 && !self.can_insert(k) {
            k -= 1;
        }
        k
    }

    /// Whether `k` transitions may be sampled now (never before `min_size_to_sample` inserts).
    pub fn can_sample(&self, k: u64) -> bool {
        if self.inserts < self.cfg.min_size_to_sample {
            return false;
        }
        !self.cfg.block_learner || self.diff() - k as f64 >= self.min_diff
    }

    fn observe(&mut self) {
        if self.inserts >= self.cfg.min_size_to_sample {
            let d = self.diff();
            self.seen = Some(match self.seen {
                Some((lo, hi)) => (lo.min(d), hi.max(d)),
                None => (d, d),
            });
        }
    }

    /// Records `k` inserted transitions.
    pub fn inserted(&mut self, k: u64) {
        self.inserts += k;
        self.observe();
    }

    /// Records `k` sampled transitions.
    pub fn sampled(&mut self, k: u64) {
        self.samples += k;
        self.observe();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(spi: f64, min: u64, eb: f64) -> RateLimit {
        RateLimit { samples_per_insert: spi, min_size_to_sample: min, error_buffer: eb, ..RateLimit::default() }
    }

    #[test]
    fn band_follows_reverb_offsets() {
        let l = RateLimiter::new(cfg(2.0, 100, 50.0), 32).unwrap();
        assert_eq!(l.band(), (150.0, 250.0));
    }

    #[test]
    fn rejects_bad_values_with_names() {
        let e = RateLimiter::new(cfg(0.0, 100, 50.0), 32).unwrap_err().to_string();
        assert!(e.contains("samples_per_insert = 0"), "{e}");
        let e = RateLimiter::new(cfg(1.0, 10, 50.0), 32).unwrap_err().to_string();
        assert!(e.contains("min_size_to_sample = 10"), "{e}");
        let e = RateLimiter::new(cfg(8.0, 100, 19.0), 32).unwrap_err().to_string();
        assert!(e.contains("error_buffer = 19") && e.contains("20"), "{e}");
    }

    /// Alternating greedily between the two sides never deadlocks and keeps diff in the band.
    #[test]
    fn greedy_alternation_stays_in_band() {
        for (spi, batch) in [(0.5, 4usize), (8.0, 32), (32.0, 32), (1.0, 1)] {
            let eb = (batch as f64 + spi) / 2.0;
            let mut l = RateLimiter::new(cfg(spi, batch as u64, eb), batch).unwrap();
            for _ in 0..10_000 {
                let (ci, cs) = (l.can_insert(1), l.can_sample(batch as u64));
                assert!(ci || cs, "deadlock at diff {} (spi {spi})", l.diff());
                if cs {
                    l.sampled(batch as u64);
                } else {
                    l.inserted(1);
                }
            }
            let (lo, hi) = l.seen_range().unwrap();
            let (blo, bhi) = l.band();
            assert!(lo >= blo && hi <= bhi, "seen [{lo}, {hi}] outside [{blo}, {bhi}]");
            let ratio = l.samples() as f64 / l.inserts() as f64;
            assert!((ratio - spi).abs() / spi < 0.05, "ratio {ratio} vs {spi}");
        }
    }

    /// The allowance is exactly the number of single inserts `can_insert` lets through.
    #[test]
    fn insert_allowance_matches_single_inserts() {
        for (spi, min, eb, batch) in [(4.0, 100, 64.0, 32usize), (0.3, 8, 8.0, 4), (32.0, 1000, 8192.0, 64)] {
            let mut l = RateLimiter::new(cfg(spi, min, eb), batch).unwrap();
            for round in 0..300 {
                for want in [0u64, 1, 7, 50, 10_000] {
                    let mut probe = l.clone();
                    let mut n = 0;
                    while n < want && probe.can_insert(1) {
                        probe.inserted(1);
                        n += 1;
                    }
                    assert_eq!(l.insert_allowance(want), n, "spi {spi} round {round} want {want}");
                }
                let k = l.insert_allowance(13);
                l.inserted(k);
                if l.can_sample(batch as u64) {
                    l.sampled(batch as u64);
                }
            }
        }
    }

    #[test]
    fn switched_off_sides_never_block() {
        let mut l =
            RateLimiter::new(RateLimit { block_actors: false, block_learner: false, ..cfg(1.0, 4, 4.0) }, 4).unwrap();
        for _ in 0..100 {
            assert!(l.can_insert(1));
            l.inserted(1);
        }
        for _ in 0..100 {
            assert!(l.can_sample(4));
            l.sampled(4);
        }
    }
}
