//! Collection throughput of Ape-X DQN on CartPole with 1, 2 and 4 actors, the learner idle and training.
//! A measurement, not a check: run by hand (docs/BENCHMARKS.md, "Parallel actors"):
//!
//! `cargo test --release -p bellman-agents --test actors_throughput -- --ignored --nocapture`
//!
//! `BELLMAN_ACTORS` (e.g. `1,2,4,8`), `BELLMAN_IDLE_STEPS` / `BELLMAN_TRAIN_STEPS` and `BELLMAN_SEND_BATCH`
//! / `BELLMAN_CHANNEL` (transitions per message and channel capacity in messages, default `ApexConfig`'s 16 and 1)
//! change the sweep. Each line gives the channel's share of the actors' busy CPU time (per-thread CPU clock,
//! `CounterSnapshot::send_cpu_fraction`), the wall-time share, and the CPU burnt blocked on a full channel.
use std::time::Instant;

use bellman_agents::actors::{ApexConfig, ApexDqnTrainer};
use bellman_agents::dqn::DqnTrainer;
use bellman_agents::trainer::{EnvSetup, NullReporter, Trainer};

#[path = "common/cartpole.rs"]
mod cartpole;
use cartpole::cartpole_cfg;

fn env_usize(k: &str, d: u64) -> u64 {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

/// One sweep point's figures.
struct Figures {
    /// Env steps per second (wall time).
    sps: f64,
    /// Wall time of non-blocking sends over busy actor wall time.
    send_wall: f64,
    /// Actor-thread CPU time on the channel over the actor threads' whole-loop CPU time.
    send_cpu: f64,
    /// Busy actor CPU seconds (not blocked) per env step, in microseconds.
    cpu_us_per_step: f64,
    /// CPU burnt blocked on a full channel over the actor threads' whole-loop CPU time.
    blocked_cpu: f64,
    /// Blocked share of actor wall time.
    blocked: f64,
    updates: u64,
    /// The learner thread's CPU time per received transition, in nanoseconds (inserting, polling, updating).
    learner_ns: f64,
}

fn run(n: usize, steps: u64, idle: bool) -> Figures {
    let cfg = cartpole_cfg();
    // Idle learner: it inserts but (almost) never samples.
    let d = ApexConfig::default();
    let send_batch = env_usize("BELLMAN_SEND_BATCH", d.send_batch as u64) as usize;
    let channel_capacity = env_usize("BELLMAN_CHANNEL", d.channel_capacity as u64) as usize;
    let d = ApexConfig { send_batch, channel_capacity, ..d };
    let apex = if idle { ApexConfig { samples_per_insert: Some(1e-6), error_buffer: Some(64.0), ..d } } else { d };
    let mut t = ApexDqnTrainer::new(&cfg, &apex, n, &EnvSetup::new("CartPole-v1"), 0, "cpu").unwrap();
    let start = Instant::now();
    let cpu0 = bellman_agents::actors::counters::thread_cpu_ns().unwrap_or(0);
    t.train(steps, &mut NullReporter).unwrap();
    let learner_cpu = bellman_agents::actors::counters::thread_cpu_ns().unwrap_or(0).saturating_sub(cpu0);
    let secs = start.elapsed().as_secs_f64();
    let c = t.shutdown().unwrap();
    assert_eq!(c.sent, c.received);
    Figures {
        sps: t.steps_done() as f64 / secs,
        send_wall: c.send_fraction(),
        send_cpu: c.send_cpu_fraction(),
        cpu_us_per_step: 1e6 * (c.actor_cpu_secs - c.wait_cpu_secs) / c.env_steps_sent.max(1) as f64,
        blocked_cpu: if c.actor_cpu_secs > 0.0 { c.wait_cpu_secs / c.actor_cpu_secs } else { 0.0 },
        blocked: c.wait_fraction(),
        updates: c.updates,
        learner_ns: learner_cpu as f64 / c.received.max(1) as f64,
    }
}

#[test]
#[ignore = "a measurement; run by hand with --release --ignored --nocapture"]
fn collection_throughput() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // As the `bellman` binary: candle on one thread. Unset, candle reads /proc/cpuinfo on every matmul, which
        // made this test's training rows 8x slower on the GPU machine (docs/GPU.md).
        // SAFETY: before any candle or rayon work, no other thread reads the environment yet.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
    let actors: Vec<usize> = std::env::var("BELLMAN_ACTORS")
        .unwrap_or_else(|_| "1,2,4".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let idle_steps = env_usize("BELLMAN_IDLE_STEPS", 400_000);
    let train_steps = env_usize("BELLMAN_TRAIN_STEPS", 20_000);
    println!("cores: {:?}", std::thread::available_parallelism());
    // The cost of one per-thread CPU clock read (the pool takes two per message).
    let n = 100_000u32;
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(bellman_agents::actors::counters::thread_cpu_ns());
    }
    println!("thread CPU clock: {:.0} ns per read", start.elapsed().as_nanos() as f64 / n as f64);
    let mut base = None;
    for &n in &actors {
        let f = run(n, idle_steps, true);
        let b = *base.get_or_insert(f.sps);
        println!(
            "idle learner   actors {n}: {:>10.0} env steps/s  scaling {:.2}x ({:.0}% of linear)  channel {:.2}% of actor \
             busy CPU time ({:.2}% of busy wall time)  busy actor CPU {:.2} us/step  blocked {:.0}% (CPU burnt \
             blocked: {:.0}% of actor CPU)  updates {}  learner CPU {:.0} ns per transition",
            f.sps,
            f.sps / b,
            100.0 * f.sps / b / n as f64,
            100.0 * f.send_cpu,
            100.0 * f.send_wall,
            f.cpu_us_per_step,
            100.0 * f.blocked,
            100.0 * f.blocked_cpu,
            f.updates,
            f.learner_ns
        );
    }
    for &n in &actors {
        let f = run(n, train_steps, false);
        println!(
            "training       actors {n}: {:>10.0} env steps/s  channel {:.2}% of busy actor CPU time ({:.2}% of busy \
             wall time)  busy actor CPU {:.2} us/step  blocked {:.0}% (CPU burnt blocked: {:.0}% of actor CPU)  \
             updates {}",
            f.sps,
            100.0 * f.send_cpu,
            100.0 * f.send_wall,
            f.cpu_us_per_step,
            100.0 * f.blocked,
            100.0 * f.blocked_cpu,
            f.updates
        );
    }
    // Reference: the single-process trainer with the same config.
    let mut t = DqnTrainer::new(&cartpole_cfg(), &EnvSetup::new("CartPole-v1"), 0, "cpu").unwrap();
    let start = Instant::now();
    t.train(train_steps, &mut NullReporter).unwrap();
    println!("single-process DqnTrainer: {:.0} env steps/s", t.steps_done() as f64 / start.elapsed().as_secs_f64());
}
