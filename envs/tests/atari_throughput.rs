//! Env throughput of the full preprocessing pipeline (a benchmark, ignored by default). Run by hand:
//!
//! ```text
//! cargo test --release -p bellman-envs --features atari --test atari_throughput -- --ignored --nocapture
//! ```
//!
//! Prints agent steps/s (each agent step is 4 emulator frames) of Pong with the Nature preprocessing (no-op reset,
//! max-pool skip 4, 84x84 INTER_AREA, 4-frame stack, sticky actions 0.25) for one env on one thread and for
//! `AtariVecEnv` with 8 envs on 1 and 2 threads. `BELLMAN_BENCH_STEPS` sets the agent steps per env (default
//! 5000).
#![cfg(feature = "atari")]

mod atari_common;

use std::time::Instant;

use bellman_envs::atari::{AtariConfig, AtariEnv, AtariVecEnv, Preprocessing};
use rand::{Rng, SeedableRng};

/// Nanoseconds this thread has run on a CPU (`/proc/thread-self/schedstat`, first field; Linux only).
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
}

/// CPU seconds used by the whole process (user + system, `/proc/self/stat` fields 14-15, 100 ticks/s).
fn process_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command name, field 3 is index 0: utime is field 14 (index 11), stime field 15 (index 12).
    Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
}

fn steps() -> usize {
    std::env::var("BELLMAN_BENCH_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(5000)
}

#[test]
#[ignore = "benchmark: run by hand with --release -- --ignored --nocapture"]
fn pong_throughput() {
    if !atari_common::roms_available("pong_throughput") {
        return;
    }
    let p = Preprocessing { noop_max: 30, frame_stack: 4, ..Preprocessing::default() };
    let cfg = AtariConfig::preprocessed("Pong", p);
    let n = steps();
    let mut rng = rand_pcg::Pcg64::seed_from_u64(0);

    let mut env = AtariEnv::new(cfg.clone()).unwrap();
    let mut obs = vec![0u8; env.obs_len()];
    env.reset_into(Some(0), &mut obs).unwrap();
    let t = Instant::now();
    let cpu0 = thread_cpu_ns();
    for _ in 0..n {
        let s = env.step_into(rng.random_range(0..6), &mut obs).unwrap();
        if s.terminated || s.truncated {
            env.reset_into(None, &mut obs).unwrap();
        }
    }
    let dt = t.elapsed().as_secs_f64();
    let cpu = match (cpu0, thread_cpu_ns()) {
        (Some(a), Some(b)) if b > a => format!(", on-CPU {:.0} agent steps/s", n as f64 / ((b - a) as f64 * 1e-9)),
        _ => String::new(),
    };
    println!(
        "AtariEnv Pong, 1 env, 1 thread: {:.0} agent steps/s ({:.0} frames/s){cpu}",
        n as f64 / dt,
        4.0 * n as f64 / dt
    );

    for threads in [1, 2] {
        let envs = 8;
        let mut v = AtariVecEnv::new(&cfg, envs, threads).unwrap();
        v.reset(Some(0)).unwrap();
        let mut actions = vec![0usize; envs];
        let per_env = n / envs * 2;
        let t = Instant::now();
        let c0 = process_cpu_s();
        for _ in 0..per_env {
            for a in actions.iter_mut() {
                *a = rng.random_range(0..6);
            }
            v.step(&actions).unwrap();
        }
        let dt = t.elapsed().as_secs_f64();
        let total = (per_env * envs) as f64;
        let cpu = match (c0, process_cpu_s()) {
            (Some(a), Some(b)) if b > a => format!(", {:.0} agent steps per CPU-second", total / (b - a)),
            _ => String::new(),
        };
        println!(
            "AtariVecEnv Pong, {envs} envs, {threads} thread(s): {:.0} agent steps/s ({:.0} frames/s){cpu}",
            total / dt,
            4.0 * total / dt
        );
    }
}
