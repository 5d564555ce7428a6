//! Wall-clock time to solve CartPole-v1 (greedy eval mean >= 475 over 20 episodes, checked every 2500 steps as
//! experiments/configs/cartpole-dqn.toml does) with the single-process DQN and with Ape-X actors. A measurement,
//! run by hand (docs/BENCHMARKS.md, "Parallel actors"):
//!
//! `cargo test --release -p bellman-agents --test actors_learning -- --ignored --nocapture`
//!
//! `BELLMAN_SEEDS` (default `0,1,2`), `BELLMAN_ACTORS` (default `2`), `BELLMAN_EPS` (`apex` or `schedule`, default
//! `apex`) `BELLMAN_SPI` (samples per insert, default the config's ratio, 32) and `BELLMAN_PUBLISH` (updates between
//! weight publications, default 1),
//! `BELLMAN_SEND_BATCH` and `BELLMAN_CHANNEL` (messages) change the sweep.
use std::time::{Duration, Instant};

use bellman_agents::actors::{ActorEpsilon, ApexConfig, ApexDqnTrainer};
use bellman_agents::dqn::DqnTrainer;
use bellman_agents::trainer::{EnvSetup, NullReporter, Trainer};

#[path = "common/cartpole.rs"]
mod cartpole;
use cartpole::cartpole_cfg;

/// Trains in chunks of 2500 steps; returns (training seconds until solved, steps, best eval mean).
fn time_to_solve(t: &mut dyn Trainer) -> (Option<Duration>, u64, f64) {
    let mut train_time = Duration::ZERO;
    let mut best = f64::MIN;
    let mut until = 0;
    while until < 50_000 {
        until += 2_500;
        let s = Instant::now();
        t.train(until, &mut NullReporter).unwrap();
        train_time += s.elapsed();
        let m = t.evaluate(20, 1000).unwrap().mean();
        best = best.max(m);
        if m >= 475.0 {
            return (Some(train_time), t.steps_done(), best);
        }
    }
    (None, t.steps_done(), best)
}

#[test]
#[ignore = "a measurement; run by hand with --release --ignored --nocapture"]
fn cartpole_time_to_solve() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // As the `bellman` binary: candle on one thread (docs/GPU.md). SAFETY: before any candle or rayon work.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.into());
    let seeds: Vec<u64> = var("BELLMAN_SEEDS", "0,1,2").split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let actors: usize = var("BELLMAN_ACTORS", "2").parse().unwrap();
    let eps = if var("BELLMAN_EPS", "apex") == "apex" { ActorEpsilon::Apex } else { ActorEpsilon::Schedule };
    let spi: Option<f64> = std::env::var("BELLMAN_SPI").ok().and_then(|v| v.parse().ok());
    let publish_every: u64 = var("BELLMAN_PUBLISH", "1").parse().unwrap();
    let d = ApexConfig::default();
    let send_batch: usize = var("BELLMAN_SEND_BATCH", &d.send_batch.to_string()).parse().unwrap();
    let channel_capacity: usize = var("BELLMAN_CHANNEL", &d.channel_capacity.to_string()).parse().unwrap();
    let apex = ApexConfig { epsilon: eps, samples_per_insert: spi, publish_every, send_batch, channel_capacity, ..d };
    let env = EnvSetup::new("CartPole-v1");
    for seed in seeds {
        let mut single = DqnTrainer::new(&cartpole_cfg(), &env, seed, "cpu").unwrap();
        let (t1, s1, b1) = time_to_solve(&mut single);
        let mut par = ApexDqnTrainer::new(&cartpole_cfg(), &apex, actors, &env, seed, "cpu").unwrap();
        let (t2, s2, b2) = time_to_solve(&mut par);
        let c = par.shutdown().unwrap();
        println!(
            "seed {seed}: single {:?} ({s1} steps, best {b1:.1})  actors={actors} {eps:?} {:?} ({s2} steps, best \
             {b2:.1}, {} updates)",
            t1.map(|d| format!("{:.1}s", d.as_secs_f64())),
            t2.map(|d| format!("{:.1}s", d.as_secs_f64())),
            c.updates
        );
    }
}
