#!/usr/bin/env python3
"""Steps per second of Python Gymnasium, the reference for Bellman's environment benchmarks.

Measures, with random actions and resets included (the same workloads as `envs/benches/envs.rs`):

* CartPole-v1 and FrozenLake-v1 from `gym.make` (a single env, with the registry's wrappers: TimeLimit,
  OrderEnforcing, PassiveEnvChecker), reset whenever an episode ends;
* `gym.make_vec(id, num_envs=N, vectorization_mode="sync")` (a `SyncVectorEnv`, autoreset mode NextStep, the
  default) for CartPole-v1 with N = 8 and 64 and FrozenLake-v1 with N = 64, counting sub-env steps.

Random actions are pre-generated with numpy (seeded) before timing so that the figure is the env's cost and not
`action_space.sample()`'s; single-env actions are converted to Python ints, as an agent would pass them.

Setup and use (Gymnasium 1.4.0 is the version the figures in docs/BENCHMARKS.md were taken with):

    pip install gymnasium==1.4.0
    python3 scripts/bench_gymnasium.py              # about 1 minute, prints a Markdown table
    python3 scripts/bench_gymnasium.py --seconds 1 --repeats 1   # quick look

Each figure is the median over `--repeats` timed runs of about `--seconds` seconds each, in wall-clock time and
in the thread's on-CPU time (`time.thread_time()`): on a shared machine the second is the throughput the env would
have on a core of its own (compare with `BELLMAN_BENCH_CPU_TIME=1 cargo bench -p bellman-envs --bench envs`).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import gymnasium as gym
import numpy as np

# Pre-generated actions per chunk; the timed loop cycles through them.
CHUNK = 100_000


def time_single(env_id: str, seconds: float, seed: int) -> tuple[float, float]:
    """Steps per second of one `gym.make` env, resetting when an episode ends."""
    env = gym.make(env_id)
    n_actions = int(env.action_space.n)
    actions = np.random.default_rng(seed).integers(0, n_actions, size=CHUNK).tolist()
    env.reset(seed=seed)
    steps = 0
    cpu_start = time.thread_time()
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for a in actions:
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()
        steps += CHUNK
        now = time.perf_counter()
        if now >= deadline:
            break
    cpu = time.thread_time() - cpu_start
    env.close()
    return steps / (now - start), steps / cpu


def time_vector(env_id: str, num_envs: int, seconds: float, seed: int) -> tuple[float, float]:
    """Sub-env steps per second of `gym.make_vec(..., vectorization_mode="sync")` (NextStep autoreset)."""
    envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync")
    n_actions = int(envs.single_action_space.n)
    batches = max(1, CHUNK // num_envs)
    actions = np.random.default_rng(seed).integers(0, n_actions, size=(batches, num_envs))
    envs.reset(seed=seed)
    steps = 0
    cpu_start = time.thread_time()
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for a in actions:
            envs.step(a)
        steps += batches * num_envs
        now = time.perf_counter()
        if now >= deadline:
            break
    cpu = time.thread_time() - cpu_start
    envs.close()
    return steps / (now - start), steps / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="approximate length of one timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per workload (the median is shown)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    workloads = [
        ("CartPole-v1, single env (gym.make)", lambda: time_single("CartPole-v1", args.seconds, args.seed)),
        ("CartPole-v1, SyncVectorEnv x 8", lambda: time_vector("CartPole-v1", 8, args.seconds, args.seed)),
        ("CartPole-v1, SyncVectorEnv x 64", lambda: time_vector("CartPole-v1", 64, args.seconds, args.seed)),
        ("FrozenLake-v1, single env (gym.make)", lambda: time_single("FrozenLake-v1", args.seconds, args.seed)),
        ("FrozenLake-v1, SyncVectorEnv x 64", lambda: time_vector("FrozenLake-v1", 64, args.seconds, args.seed)),
    ]
    print(f"Gymnasium {gym.__version__}, numpy {np.__version__}, Python {platform.python_version()}")
    print(f"median of {args.repeats} runs of ~{args.seconds:g} s each; random actions; resets included\n")
    print("| workload | (sub-env) steps/s, wall clock | (sub-env) steps/s, on-CPU time |")
    print("|---|---:|---:|")
    for name, run in workloads:
        rates = [run() for _ in range(args.repeats)]
        wall = statistics.median(r[0] for r in rates)
        cpu = statistics.median(r[1] for r in rates)
        print(f"| {name} | {wall:,.0f} | {cpu:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
