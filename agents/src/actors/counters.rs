//! Counters of the actor/learner protocol, shared between threads, and their snapshot.
use std::sync::atomic::{AtomicU64, Ordering};

/// One actor's live counters (relaxed atomics: each is exact, a snapshot of several is not one instant). Each
/// actor has its own, aligned to 128 bytes (two cache lines, for adjacent-line prefetch), so actors never write
/// to a cache line another actor writes; the learner sums them when it reports.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Counters {
    pub(crate) sent: AtomicU64,
    pub(crate) env_steps_sent: AtomicU64,
    pub(crate) act_ns: AtomicU64,
    pub(crate) send_ns: AtomicU64,
    pub(crate) wait_ns: AtomicU64,
    pub(crate) weights_ns: AtomicU64,
    pub(crate) send_cpu_ns: AtomicU64,
    pub(crate) wait_cpu_ns: AtomicU64,
    pub(crate) loop_cpu_ns: AtomicU64,
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
    /// CPU seconds the actor threads spent on the channel's non-blocking work (taking a recycled batch, counting,
    /// a send into a channel with room, which may wake the learner), summed over actors; per-thread CPU time
    /// (`CLOCK_THREAD_CPUTIME_ID`), so descheduling does not count. 0 where that clock is unavailable.
    pub send_cpu_secs: f64,
    /// CPU seconds the actor threads burnt blocked on a full channel (crossbeam spins and yields before it
    /// parks): backpressure, summed over actors.
    pub wait_cpu_secs: f64,
    /// CPU seconds of the actor threads' whole loop (acting, loading weights, channel, blocked sends), summed
    /// over actors.
    pub actor_cpu_secs: f64,
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
    /// Channel overhead in CPU time: the share of the actor threads' busy CPU time (their whole loop less the CPU
    /// burnt blocked on a full channel) spent on the channel's non-blocking work
    /// ([`CounterSnapshot::send_cpu_secs`]), in [0, 1]; 0 before any batch was sent or where the thread CPU clock
    /// is unavailable. Unlike [`CounterSnapshot::send_fraction`] (wall time), it does not grow when an
    /// oversubscribed machine deschedules an actor during a send.
    ///
    /// ```
    /// use bellman_agents::actors::CounterSnapshot;
    /// let c = CounterSnapshot { send_cpu_secs: 0.5, wait_cpu_secs: 5.0, actor_cpu_secs: 25.0,
    ///     ..CounterSnapshot::default() };
    /// assert_eq!(c.send_cpu_fraction(), 0.025);
    /// assert_eq!(CounterSnapshot::default().send_cpu_fraction(), 0.0);
    /// ```
    pub fn send_cpu_fraction(&self) -> f64 {
        let busy = self.actor_cpu_secs - self.wait_cpu_secs;
        if busy > 0.0 { (self.send_cpu_secs / busy).clamp(0.0, 1.0) } else { 0.0 }
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

/// CPU time the calling thread has consumed, in nanoseconds (POSIX `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`;
/// time the thread spends descheduled or parked does not count). `None` where the clock is unavailable. One
/// system call (no vDSO fast path for this clock on Linux), so the pool reads it twice per message, never per
/// transition.
pub fn thread_cpu_ns() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid, exclusively borrowed timespec; clock_gettime only writes into it.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        if rc == 0 && ts.tv_sec >= 0 && ts.tv_nsec >= 0 {
            return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn thread_cpu_clock_counts_work_not_sleep() {
        let t0 = thread_cpu_ns().expect("Linux has CLOCK_THREAD_CPUTIME_ID");
        std::thread::sleep(std::time::Duration::from_millis(30));
        let t1 = thread_cpu_ns().unwrap();
        // Sleeping costs (almost) no CPU time: well under the 30 ms of wall time.
        assert!(t1 - t0 < 10_000_000, "slept 30 ms but used {} ns of CPU", t1 - t0);
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(20) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let t2 = thread_cpu_ns().unwrap();
        // Spinning for 20 ms of wall time uses CPU time, at most the wall time (plus clock granularity).
        assert!(t2 - t1 <= 25_000_000, "{} ns", t2 - t1);
        assert!(t2 - t1 > 0, "a busy loop used no CPU time");
    }
}
