//! Actor-side admission: an actor claims room in the rate limiter's band before it acts, so that a learner that
//! cannot keep up stops the actors *before* they collect data, not after (data waiting in a channel is data
//! collected with old weights: policy lag).
//!
//! The learner's [`super::RateLimiter`] stays the authority (it decides what is inserted and when); this is its
//! mirror for the actors. Inserting `I + k` transitions is allowed while `I + k <= min_size_to_sample` or
//! `(I + k) * samples_per_insert - S <= max_diff`, that is while `I + k <= allowed(S)` with
//! `allowed(S) = max(min_size_to_sample, floor((max_diff + S) / samples_per_insert))`. The actors count what they
//! have claimed (sent or being collected) instead of `I`; since every claimed transition is inserted at most
//! later, `claimed >= I`.
//!
//! An actor starts a message of `B` transitions once `need` of them fit: the whole message (`need = B`, so the
//! learner can insert it on arrival) unless the band is too narrow for that to be safe. Actors waiting for `need`
//! while the learner waits for data is a deadlock unless `need * samples_per_insert <= 2 * error_buffer -
//! sample_batch` (the learner's side of the band) and `need <= 1 + error_buffer / samples_per_insert` (during the
//! warm-up, when the learner samples nothing), so `need` is `B` capped by both (and at least 1, which the
//! limiter's own validation makes safe); the learner then holds the excess of a message until it fits.
//!
//! An actor that finds no room waits on a condition variable; the learner, after each update, publishes its
//! sample count (one atomic store) and wakes waiting actors only when `need` fits (one lock and one wake per
//! message, never per transition). Waiting also ends on a timeout, so a stop request is seen within
//! [`Admission::POLL`].
//!
//! ```
//! use bellman_agents::actors::RateLimit;
//! use bellman_agents::actors::admission::Admission;
//! use std::sync::atomic::AtomicBool;
//! let rate = RateLimit { samples_per_insert: 4.0, min_size_to_sample: 100, error_buffer: 64.0, ..RateLimit::default() };
//! let a = Admission::new(&rate, 16, 32);
//! assert_eq!(a.need(), 16);
//! // allowed(0) = max(100, floor((400 + 64) / 4)) = 116 transitions before the learner samples anything.
//! assert_eq!(a.allowed(0), 116);
//! assert!(a.try_claim(100));
//! assert!(a.try_claim(16));
//! assert!(!a.try_claim(16)); // no room until the learner samples 64 more
//! a.set_sampled(64);
//! assert!(a.try_claim(16));
//! assert_eq!(a.claimed(), 132);
//! let stop = AtomicBool::new(true);
//! assert!(!a.claim(16, &stop)); // a stop request ends a wait without a claim
//! ```
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::limiter::RateLimit;

/// Shared admission state between the learner and its actors (see the [module documentation](self)).
#[derive(Debug)]
pub struct Admission {
    enabled: bool,
    samples_per_insert: f64,
    min_size: u64,
    max_diff: f64,
    /// Room an actor needs before it starts a message (the learner wakes waiters when this much fits).
    need: u64,
    sampled: AtomicU64,
    claimed: AtomicU64,
    waiters: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Admission {
    /// The longest an actor waits before it looks at the stop flag again.
    pub const POLL: Duration = Duration::from_millis(10);

    /// Admission for a validated `rate`, actors sending `message` transitions at a time and a learner sampling
    /// `sample_batch` per update. With `rate.block_actors` off, every claim succeeds at once.
    pub fn new(rate: &RateLimit, message: usize, sample_batch: usize) -> Self {
        // reverb/rate_limiters.py, SampleToInsertRatio: max_diff = samples_per_insert * min_size + error_buffer.
        let max_diff = rate.samples_per_insert * rate.min_size_to_sample as f64 + rate.error_buffer;
        let spi = rate.samples_per_insert;
        // Deadlock freedom (module documentation): both caps, floored, at least 1.
        let by_band = ((2.0 * rate.error_buffer - sample_batch as f64) / spi).floor();
        let by_warmup = 1.0 + (rate.error_buffer / spi).floor();
        let cap = by_band.min(by_warmup).max(1.0);
        let need = if cap >= message as f64 { message as u64 } else { cap as u64 }.max(1);
        Admission {
            enabled: rate.block_actors,
            samples_per_insert: rate.samples_per_insert,
            min_size: rate.min_size_to_sample,
            max_diff,
            need,
            sampled: AtomicU64::new(0),
            claimed: AtomicU64::new(0),
            waiters: AtomicUsize::new(0),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        }
    }

    /// Transitions the limiter lets in once `sampled` transitions were sampled (`u64::MAX` when actors never
    /// block).
    pub fn allowed(&self, sampled: u64) -> u64 {
        if !self.enabled {
            return u64::MAX;
        }
        let by_ratio = ((self.max_diff + sampled as f64) / self.samples_per_insert).floor();
        self.min_size.max(if by_ratio > 0.0 { by_ratio as u64 } else { 0 })
    }

    /// Room (in transitions) an actor waits for before it starts a message: the message size unless the band is
    /// too narrow for that (see the [module documentation](self)).
    pub fn need(&self) -> u64 {
        self.need
    }

    /// Transitions claimed so far (sent, or being collected).
    pub fn claimed(&self) -> u64 {
        self.claimed.load(Ordering::SeqCst)
    }

    /// Claims `k` transitions if the band has room for `min(k, need)` of them now; true when claimed.
    pub fn try_claim(&self, k: u64) -> bool {
        let allowed = self.allowed(self.sampled.load(Ordering::SeqCst));
        let fit = k.min(self.need);
        let mut c = self.claimed.load(Ordering::SeqCst);
        loop {
            if c.saturating_add(fit) > allowed {
                return false;
            }
            match self.claimed.compare_exchange_weak(c, c + k, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return true,
                Err(now) => c = now,
            }
        }
    }

    /// Claims `k` transitions, waiting until the learner has sampled enough for [`Admission::try_claim`] to
    /// succeed; false when `stop` was set first (nothing claimed then).
    pub fn claim(&self, k: u64, stop: &AtomicBool) -> bool {
        if self.try_claim(k) {
            return true;
        }
        // A poisoned lock guards no data (it only orders waits and wakes), so it is used as is.
        let mut g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        // Registered before the check: a learner that publishes after this check sees the waiter and wakes it
        // (both under SeqCst), one that published before is seen by the check.
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let ok = loop {
            if self.try_claim(k) {
                break true;
            }
            if stop.load(Ordering::Acquire) {
                break false;
            }
            g = match self.cv.wait_timeout(g, Self::POLL) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        ok
    }

    /// Corrects a claim of `claimed` transitions to the `actual` number sent (a step can complete several
    /// transitions, and a stop can cut a message short).
    pub fn settle(&self, claimed: u64, actual: u64) {
        if actual > claimed {
            self.claimed.fetch_add(actual - claimed, Ordering::SeqCst);
        } else if claimed > actual {
            self.claimed.fetch_sub(claimed - actual, Ordering::SeqCst);
        }
        if claimed > actual {
            self.wake_if_room();
        }
    }

    /// The learner's sample count after an update; wakes waiting actors when `need` transitions fit.
    pub fn set_sampled(&self, sampled: u64) {
        self.sampled.store(sampled, Ordering::SeqCst);
        self.wake_if_room();
    }

    fn wake_if_room(&self) {
        if self.waiters.load(Ordering::SeqCst) == 0 {
            return;
        }
        let room = self.allowed(self.sampled.load(Ordering::SeqCst)).saturating_sub(self.claimed());
        if room >= self.need {
            let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.cv.notify_all();
        }
    }

    /// Wakes every waiting actor (at shutdown, after the stop flag is set).
    pub fn wake_all(&self) {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    fn rate(spi: f64, min: u64, eb: f64) -> RateLimit {
        RateLimit { samples_per_insert: spi, min_size_to_sample: min, error_buffer: eb, ..RateLimit::default() }
    }

    /// `allowed` is the largest insert count the learner's limiter accepts, for many sample counts.
    #[test]
    fn allowed_matches_the_learners_limiter() {
        for (spi, min, eb, batch) in [(4.0, 100, 64.0, 32usize), (0.5, 8, 8.0, 4), (32.0, 1000, 8192.0, 64)] {
            let a = Admission::new(&rate(spi, min, eb), 16, batch);
            let mut lim = super::super::RateLimiter::new(rate(spi, min, eb), batch).unwrap();
            for round in 0..200 {
                let allowed = a.allowed(lim.samples());
                while lim.can_insert(1) {
                    lim.inserted(1);
                }
                assert_eq!(lim.inserts(), allowed, "spi {spi} round {round}");
                if lim.can_sample(batch as u64) {
                    lim.sampled(batch as u64);
                }
            }
        }
    }

    /// Actors claiming whole messages and a learner inserting and sampling as its limiter allows never both get
    /// stuck, over a grid of bands (narrow ones included, where `need` is capped), and the learner never holds
    /// more than one message's excess.
    #[test]
    fn claims_and_the_learner_never_deadlock() {
        for spi in [0.25, 1.0, 8.0, 32.0] {
            for batch in [1usize, 4, 32, 64] {
                for message in [1usize, 16, 50] {
                    let min_eb = (batch as f64 + spi) / 2.0;
                    for eb in [min_eb, 2.0 * min_eb, 64.0 * min_eb] {
                        let r = rate(spi, (batch as u64).max(100), eb);
                        let a = Admission::new(&r, message, batch);
                        let mut lim = super::super::RateLimiter::new(r, batch).unwrap();
                        let mut pending = 0u64;
                        for step in 0..20_000 {
                            let mut moved = false;
                            if a.try_claim(message as u64) {
                                pending += message as u64;
                                moved = true;
                            }
                            while pending > 0 && lim.can_insert(1) {
                                lim.inserted(1);
                                pending -= 1;
                                moved = true;
                            }
                            if lim.can_sample(batch as u64) {
                                lim.sampled(batch as u64);
                                a.set_sampled(lim.samples());
                                moved = true;
                            }
                            assert!(moved, "stuck at step {step}: spi {spi} batch {batch} message {message} eb {eb}");
                            assert!(pending <= message as u64, "pending {pending} > one message");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn narrow_bands_cap_the_room_needed() {
        // pong-dqn-fast's band: samples_per_insert 8, error_buffer 64, batch 32: (128 - 32) / 8 = 12 and
        // 1 + 64 / 8 = 9, so a 16-transition message starts once 9 fit.
        let a = Admission::new(&rate(8.0, 1000, 64.0), 16, 32);
        assert_eq!(a.need(), 9);
        let a = Admission::new(&rate(32.0, 1000, 8192.0), 16, 64);
        assert_eq!(a.need(), 16);
    }

    #[test]
    fn switched_off_admits_everything() {
        let a = Admission::new(&RateLimit { block_actors: false, ..rate(1.0, 4, 4.0) }, 4, 4);
        for _ in 0..1000 {
            assert!(a.try_claim(1_000_000));
        }
    }

    #[test]
    fn settle_corrects_the_claim() {
        let a = Admission::new(&rate(1.0, 10, 5.0), 4, 4);
        assert!(a.try_claim(4));
        a.settle(4, 6);
        assert_eq!(a.claimed(), 6);
        a.settle(4, 1);
        assert_eq!(a.claimed(), 3);
    }

    /// A waiting actor is woken by the learner's sample count, not by its poll timeout.
    #[test]
    fn a_waiting_actor_wakes_when_the_learner_samples() {
        let a = Arc::new(Admission::new(&rate(1.0, 16, 40.0), 16, 16));
        assert!(a.try_claim(a.allowed(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (a2, s2) = (Arc::clone(&a), Arc::clone(&stop));
        let t = std::thread::spawn(move || {
            let start = Instant::now();
            let ok = a2.claim(16, &s2);
            (ok, start.elapsed())
        });
        while a.waiters.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        // 15 more samples make room for 15 transitions: not a whole message, the actor keeps waiting.
        a.set_sampled(15);
        std::thread::sleep(Duration::from_millis(30));
        assert!(!t.is_finished());
        a.set_sampled(16);
        let (ok, _) = t.join().unwrap();
        assert!(ok);
        assert_eq!(a.claimed(), a.allowed(16));
    }

    #[test]
    fn a_stop_ends_a_wait_without_a_claim() {
        let a = Arc::new(Admission::new(&rate(1.0, 16, 40.0), 16, 16));
        assert!(a.try_claim(a.allowed(0)));
        let before = a.claimed();
        let stop = Arc::new(AtomicBool::new(false));
        let (a2, s2) = (Arc::clone(&a), Arc::clone(&stop));
        let t = std::thread::spawn(move || a2.claim(16, &s2));
        std::thread::sleep(Duration::from_millis(5));
        stop.store(true, Ordering::Release);
        a.wake_all();
        assert!(!t.join().unwrap());
        assert_eq!(a.claimed(), before);
    }

    /// Many actors claiming at once never take more than the band allows.
    #[test]
    fn concurrent_claims_never_exceed_the_band() {
        let a = Arc::new(Admission::new(&rate(2.0, 64, 32.0), 8, 4));
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (a, s) = (Arc::clone(&a), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while a.claim(8, &s) {
                        n += 8;
                    }
                    n
                })
            })
            .collect();
        let mut sampled = 0;
        for _ in 0..500 {
            assert!(a.claimed() <= a.allowed(sampled), "{} > {}", a.claimed(), a.allowed(sampled));
            sampled += 4;
            a.set_sampled(sampled);
        }
        std::thread::sleep(Duration::from_millis(20));
        stop.store(true, Ordering::Release);
        a.wake_all();
        let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, a.claimed());
        assert!(total <= a.allowed(sampled));
        // All the room was taken (to within one message).
        assert!(total + 8 > a.allowed(sampled), "{total} vs {}", a.allowed(sampled));
    }
}
