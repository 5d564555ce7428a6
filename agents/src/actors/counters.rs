//! Counters of the actor/learner protocol, shared between threads, and their snapshot.
use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters (relaxed atomics: each is exact, a snapshot of several is not one instant).
#[derive(Debug, Default)]
pub struct Counters {
    pub(crate) sent: AtomicU64,
    pub(crate) env_steps_sent: AtomicU64,
    pub(crate) act_ns: AtomicU64,
    pub(crate) send_ns: AtomicU64,
    pub(crate) wait_ns: AtomicU64,
    pub(crate) weights_ns: AtomicU64,
}

/// Figures of the protocol at one moment, all counting transitions unless named otherwise.
///
/// Invariants (checked by the tests): `sent >= received`, and after [`super::ActorPool::shutdown`]
/// `sent == received == inserted + discarded + pending`, with `pending == 0`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CounterSnapshot {
    /// Transitions the actors put on the channel.
    pub sent: u64,
    /// Transitions the learner took off the channel.
    pub received: u64,
    /// Transitions inserted into the replay buffer.
    pub inserted: u64,
    /// Older transitions the replay buffer overwrote (evicted) to make room.
    pub evicted: u64,
    /// Transitions received at shutdown and never inserted (counted, not lost silently).
    pub discarded: u64,
    /// Transitions received but waiting for the rate limiter to allow their insertion.
    pub pending: u64,
    /// Env steps the actors took and sent (received or not).
    pub env_steps_sent: u64,
    /// Env steps of the received batches (the learner's notion of `steps_done`).
    pub env_steps_received: u64,
    /// Learner updates done.
    pub updates: u64,
    /// Transitions sampled by the learner (updates times the sample batch).
    pub sampled: u64,
    /// Weights version the learner last published.
    pub version: u64,
    /// Seconds the actors spent acting (env steps and inference), summed over actors.
    pub act_secs: f64,
    /// Seconds the actors spent sending on a channel with room (the channel's own overhead), summed over actors.
    pub send_secs: f64,
    /// Seconds the actors spent blocked on a full channel (backpressure from the learner or the rate limiter).
    pub wait_secs: f64,
    /// Seconds the actors spent loading new weights, summed over actors.
    pub weights_secs: f64,
}

impl CounterSnapshot {
    fn busy(&self) -> f64 {
        self.act_secs + self.send_secs + self.weights_secs
    }
    /// Channel overhead: the share of the actors' busy time (acting, sending, loading weights; not blocked)
    /// spent in non-blocking sends, in [0, 1].
    pub fn send_fraction(&self) -> f64 {
        let b = self.busy();
        if b > 0.0 { self.send_secs / b } else { 0.0 }
    }
    /// Backpressure: blocked time over blocked plus busy time, in [0, 1].
    pub fn wait_fraction(&self) -> f64 {
        let t = self.busy() + self.wait_secs;
        if t > 0.0 { self.wait_secs / t } else { 0.0 }
    }
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, v: u64) {
        c.fetch_add(v, Ordering::Relaxed);
    }
    pub(crate) fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
