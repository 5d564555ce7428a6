//! Criterion helpers shared by Bellman's benches (a dev-dependency only).
//!
//! On a shared machine wall time measures the neighbours as much as the code, so every bench can also run on
//! the benchmark thread's **on-CPU time**: set `BELLMAN_BENCH_CPU_TIME=1` and [`main`] runs the benches with
//! [`OnCpuTime`] (Linux: `/proc/thread-self/schedstat`), 10 samples each, their ids prefixed with `cpu/`;
//! otherwise with criterion's wall time and no prefix.
//!
//! ```no_run
//! use bellman_benchkit::{Benches, main};
//! use criterion::Criterion;
//! use criterion::measurement::Measurement;
//!
//! struct Mine;
//! impl Benches for Mine {
//!     fn run<M: Measurement>(&self, c: &mut Criterion<M>, prefix: &str) {
//!         let mut g = c.benchmark_group(format!("{prefix}sum"));
//!         g.bench_function("0..1000", |b| b.iter(|| (0..1000u64).sum::<u64>()));
//!         g.finish();
//!     }
//! }
//! main(Mine);
//! ```
use std::time::Duration;

use criterion::Criterion;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};

/// On-CPU time of the calling thread: the first field (nanoseconds) of `/proc/thread-self/schedstat`; `None`
/// where that file does not exist (not Linux, or schedstats off).
pub fn thread_cpu_time() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(s.split_whitespace().next()?.parse().ok()?))
}

/// A criterion [`Measurement`] of the benchmark thread's on-CPU time (Linux): on a shared machine, the time the
/// work takes on a core of its own. Only meaningful for single-threaded work.
#[derive(Debug, Clone, Copy, Default)]
pub struct OnCpuTime;

impl Measurement for OnCpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu_time().unwrap_or_default()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_time().unwrap_or_default().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

/// A set of benches that runs under any measurement; `prefix` starts every group or bench id.
pub trait Benches {
    /// Registers and runs the benches on `c`.
    fn run<M: Measurement>(&self, c: &mut Criterion<M>, prefix: &str);
}

/// True when `BELLMAN_BENCH_CPU_TIME` asks for on-CPU time (set and not `0`) and the clock is available.
pub fn cpu_time_requested() -> bool {
    std::env::var_os("BELLMAN_BENCH_CPU_TIME").is_some_and(|v| v != "0") && thread_cpu_time().is_some()
}

/// Runs `benches` with on-CPU time (ids prefixed `cpu/`) when [`cpu_time_requested`], else with wall time, and
/// prints criterion's final summary. The body of a bench's `main`.
pub fn main(benches: impl Benches) {
    if cpu_time_requested() {
        let mut c = Criterion::default().with_measurement(OnCpuTime).sample_size(10).configure_from_args();
        benches.run(&mut c, "cpu/");
        c.final_summary();
    } else {
        let mut c = Criterion::default().configure_from_args();
        benches.run(&mut c, "");
        c.final_summary();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_counts_work_not_sleep() {
        let Some(t0) = thread_cpu_time() else { return };
        std::thread::sleep(Duration::from_millis(30));
        let t1 = thread_cpu_time().unwrap();
        assert!(t1 - t0 < Duration::from_millis(10), "sleeping used {:?} of CPU", t1 - t0);
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(20) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let t2 = thread_cpu_time().unwrap();
        assert!(t2 - t1 > Duration::from_millis(1), "a 20 ms busy loop used {:?} of CPU", t2 - t1);
    }
}
