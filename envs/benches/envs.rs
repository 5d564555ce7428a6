//! Environment throughput: steps per second with random actions, resets included (the workloads of
//! `scripts/bench_gymnasium.py`, for a side-by-side comparison with Python Gymnasium in docs/BENCHMARKS.md).
//!
//! * `cartpole/single/concrete`: one `TimeLimit<CartPole>` (what `gym.make("CartPole-v1")` builds), stepped
//!   through `Env::step`, monomorphised;
//! * `cartpole/single/dyn`: the registry's `Box<dyn DynEnv>` (`make("CartPole-v1")`), stepped through `step_into`;
//! * `cartpole/vector/{8,64}`: `SyncVectorEnv<TimeLimit<CartPole>>` (NextStep autoreset), sub-env steps;
//! * `cartpole/vector_dyn/64`: the same over `Box<dyn DynEnv>` (`make_vec`);
//! * `frozenlake/single` and `frozenlake/vector/64`: `FrozenLake-v1` (4x4, slippery, 100-step limit).
//!
//! Random actions are pre-generated: 65,536 actions from a seeded `SmallRng` (Xoshiro256++), cycled, so the
//! figure is the env's cost (the Python script pre-generates its actions too).
//!
//! Run: `cargo bench -p bellman-envs --bench envs -- --warm-up-time 1 --measurement-time 3`.
//!
//! On a shared machine, wall-clock figures drop with everyone else's load. With `BELLMAN_BENCH_CPU_TIME=1` (Linux)
//! the benches measure the benchmark thread's on-CPU time instead (`/proc/thread-self/schedstat`, updated at
//! scheduler ticks, so samples are made long: 10 samples per bench) and are reported under `cpu/...` ids: the
//! throughput the code would have on a core of its own.
use std::hint::black_box;

use bellman_envs::classic_control::CartPole;
use bellman_envs::toy_text::{FrozenLake, FrozenLakeConfig};
use bellman_envs::vector::{AutoresetMode, SyncVectorEnv, make_vec};
use bellman_envs::wrappers::TimeLimit;
use bellman_envs::{ActionValue, DynEnv, Env, Options, registry};
use criterion::measurement::Measurement;
use criterion::{BenchmarkId, Criterion, Throughput};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Length of the pre-generated action ring (a multiple of every vector size benchmarked).
const RING: usize = 1 << 16;
/// Single-env steps per benchmark iteration.
const SINGLE_STEPS: usize = 1000;
/// Vector `step` calls per benchmark iteration.
const VEC_STEPS: usize = 100;
/// `max_episode_steps` of CartPole-v1 and FrozenLake-v1 in Gymnasium's registry (gymnasium/envs/__init__.py).
const CARTPOLE_LIMIT: u64 = 500;
const FROZENLAKE_LIMIT: u64 = 100;

/// `RING` random actions in `0..n`, plus one vector's worth of wrap-around so every window is contiguous.
fn action_ring(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut v: Vec<usize> = (0..RING).map(|_| rng.random_range(0..n)).collect();
    v.extend_from_within(0..64);
    v
}

/// Steps a concrete env `SINGLE_STEPS` times, resetting at episode ends.
fn run_single<E: Env<Action = usize>>(env: &mut E, actions: &[usize], k: &mut usize) {
    for _ in 0..SINGLE_STEPS {
        let s = env.step(actions[*k & (RING - 1)]).unwrap();
        *k += 1;
        if s.terminated || s.truncated {
            env.reset(None).unwrap();
        }
        black_box(&s.obs);
    }
}

/// Steps a type-erased env `SINGLE_STEPS` times, resetting at episode ends.
fn run_dyn(env: &mut dyn DynEnv, obs: &mut [f32], actions: &[usize], k: &mut usize) {
    for _ in 0..SINGLE_STEPS {
        let s = env.step_into(ActionValue::Discrete(actions[*k & (RING - 1)]), obs).unwrap();
        *k += 1;
        if s.terminated || s.truncated {
            env.reset_into(None, obs).unwrap();
        }
        black_box(&*obs);
    }
}

/// Calls `step_discrete` `VEC_STEPS` times (NextStep autoreset resets finished sub-envs).
fn run_vec<E: DynEnv>(v: &mut SyncVectorEnv<E>, actions: &[usize], k: &mut usize) {
    let n = v.num_envs();
    for _ in 0..VEC_STEPS {
        let off = *k & (RING - 1);
        *k += n;
        let s = v.step_discrete(&actions[off..off + n]).unwrap();
        black_box(s.obs);
    }
}

fn cartpole<M: Measurement>(c: &mut Criterion<M>, prefix: &str) {
    let actions = action_ring(2, 0);
    let mut g = c.benchmark_group(format!("{prefix}cartpole"));

    g.throughput(Throughput::Elements(SINGLE_STEPS as u64));
    let mut env = TimeLimit::new(CartPole::new(), CARTPOLE_LIMIT);
    env.reset(Some(0)).unwrap();
    let mut k = 0;
    g.bench_function("single/concrete", |b| b.iter(|| run_single(&mut env, &actions, &mut k)));

    let mut env = registry::make("CartPole-v1").unwrap();
    let mut obs = vec![0.0f32; env.observation_space().flat_dim()];
    env.reset_into(Some(0), &mut obs).unwrap();
    let mut k = 0;
    g.bench_function("single/dyn", |b| b.iter(|| run_dyn(env.as_mut(), &mut obs, &actions, &mut k)));

    for n in [8usize, 64] {
        g.throughput(Throughput::Elements((n * VEC_STEPS) as u64));
        let make = |_| TimeLimit::new(CartPole::new(), CARTPOLE_LIMIT);
        let mut v = SyncVectorEnv::from_fn(n, make, AutoresetMode::NextStep).unwrap();
        v.reset(Some(0)).unwrap();
        let mut k = 0;
        g.bench_function(BenchmarkId::new("vector", n), |b| b.iter(|| run_vec(&mut v, &actions, &mut k)));
    }

    let n = 64;
    g.throughput(Throughput::Elements((n * VEC_STEPS) as u64));
    let mut v = make_vec("CartPole-v1", n, &Options::new(), AutoresetMode::NextStep).unwrap();
    v.reset(Some(0)).unwrap();
    let mut k = 0;
    g.bench_function(BenchmarkId::new("vector_dyn", n), |b| b.iter(|| run_vec(&mut v, &actions, &mut k)));
    g.finish();
}

fn frozenlake<M: Measurement>(c: &mut Criterion<M>, prefix: &str) {
    let actions = action_ring(4, 1);
    let make = || TimeLimit::new(FrozenLake::new(FrozenLakeConfig::default()).unwrap(), FROZENLAKE_LIMIT);
    let mut g = c.benchmark_group(format!("{prefix}frozenlake"));

    g.throughput(Throughput::Elements(SINGLE_STEPS as u64));
    let mut env = make();
    env.reset(Some(0)).unwrap();
    let mut k = 0;
    g.bench_function("single", |b| b.iter(|| run_single(&mut env, &actions, &mut k)));

    let n = 64;
    g.throughput(Throughput::Elements((n * VEC_STEPS) as u64));
    let mut v = SyncVectorEnv::from_fn(n, |_| make(), AutoresetMode::NextStep).unwrap();
    v.reset(Some(0)).unwrap();
    let mut k = 0;
    g.bench_function(BenchmarkId::new("vector", n), |b| b.iter(|| run_vec(&mut v, &actions, &mut k)));
    g.finish();
}

/// Every bench of this file, under the measurement `bellman_benchkit::main` picks (`BELLMAN_BENCH_CPU_TIME=1`:
/// on-CPU time, ids prefixed `cpu/`).
struct All;

impl bellman_benchkit::Benches for All {
    fn run<M: Measurement>(&self, c: &mut Criterion<M>, prefix: &str) {
        cartpole(c, prefix);
        frozenlake(c, prefix);
    }
}

fn main() {
    bellman_benchkit::main(All);
}
