//! Collection throughput of Ape-X DQN on CartPole with 1, 2 and 4 actors, the learner idle and training.
//! A measurement, not a check: run by hand (docs/BENCHMARKS.md, "Parallel actors"):
//!
//! `cargo test --release -p bellman-agents --test actors_throughput -- --ignored --nocapture`
//!
//! `BELLMAN_ACTORS` (e.g. `1,2,4,8`), `BELLMAN_IDLE_STEPS` / `BELLMAN_TRAIN_STEPS` and `BELLMAN_SEND_BATCH`
//! / `BELLMAN_CHANNEL` (transitions per message and channel capacity in messages, default `ApexConfig`'s 16 and 1)
//! change the sweep.
use std::time::Instant;

use bellman_agents::actors::{ApexConfig, ApexDqnTrainer};
use bellman_agents::dqn::{DqnConfig, DqnTrainer};
use bellman_agents::trainer::{EnvSetup, NullReporter, Trainer};

/// rl-baselines3-zoo's CartPole-v1 DQN settings as in experiments/configs/cartpole-dqn.toml.
fn cartpole_cfg() -> DqnConfig {
    DqnConfig {
        hidden: vec![64, 64],
        learning_rate: 2.3e-3,
        batch_size: 64,
        buffer_size: 100_000,
        learning_starts: 1_000,
        gamma: 0.99,
        target_update_interval: 10,
        train_freq: 256,
        gradient_steps: 128,
        exploration_fraction: 0.16,
        exploration_final_eps: 0.04,
        total_steps: Some(50_000),
        ..DqnConfig::default()
    }
}

fn env_usize(k: &str, d: u64) -> u64 {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn run(n: usize, steps: u64, idle: bool) -> (f64, f64, f64, u64) {
    // (env steps/s, channel overhead share of busy actor time, blocked share, updates)
    let cfg = cartpole_cfg();
    // Idle learner: it inserts but (almost) never samples.
    let d = ApexConfig::default();
    let send_batch = env_usize("BELLMAN_SEND_BATCH", d.send_batch as u64) as usize;
    let channel_capacity = env_usize("BELLMAN_CHANNEL", d.channel_capacity as u64) as usize;
    let d = ApexConfig { send_batch, channel_capacity, ..d };
    let apex = if idle { ApexConfig { samples_per_insert: Some(1e-6), error_buffer: Some(64.0), ..d } } else { d };
    let mut t = ApexDqnTrainer::new(&cfg, &apex, n, &EnvSetup::new("CartPole-v1"), 0, "cpu").unwrap();
    let start = Instant::now();
    t.train(steps, &mut NullReporter).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let c = t.shutdown().unwrap();
    assert_eq!(c.sent, c.received);
    (t.steps_done() as f64 / secs, c.send_fraction(), c.wait_fraction(), c.updates)
}

#[test]
#[ignore = "a measurement; run by hand with --release --ignored --nocapture"]
fn collection_throughput() {
    let actors: Vec<usize> = std::env::var("BELLMAN_ACTORS")
        .unwrap_or_else(|_| "1,2,4".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let idle_steps = env_usize("BELLMAN_IDLE_STEPS", 400_000);
    let train_steps = env_usize("BELLMAN_TRAIN_STEPS", 20_000);
    println!("cores: {:?}", std::thread::available_parallelism());
    let mut base = None;
    for &n in &actors {
        let (sps, send, blocked, updates) = run(n, idle_steps, true);
        let b = *base.get_or_insert(sps);
        println!(
            "idle learner   actors {n}: {sps:>10.0} env steps/s  scaling {:.2}x ({:.0}% of linear)  channel {:.2}% of \
             busy actor time  blocked {:.0}%  updates {updates}",
            sps / b,
            100.0 * sps / b / n as f64,
            100.0 * send,
            100.0 * blocked
        );
    }
    for &n in &actors {
        let (sps, send, blocked, updates) = run(n, train_steps, false);
        println!(
            "training       actors {n}: {sps:>10.0} env steps/s  channel {:.2}% of busy actor time  \
             blocked {:.0}%  updates {updates}",
            100.0 * send,
            100.0 * blocked
        );
    }
    // Reference: the single-process trainer with the same config.
    let mut t = DqnTrainer::new(&cartpole_cfg(), &EnvSetup::new("CartPole-v1"), 0, "cpu").unwrap();
    let start = Instant::now();
    t.train(train_steps, &mut NullReporter).unwrap();
    println!("single-process DqnTrainer: {:.0} env steps/s", t.steps_done() as f64 / start.elapsed().as_secs_f64());
}
