#!/usr/bin/env python3
"""Times Stable-Baselines3's ReplayBuffer.sample (and cpprb, if installed) on the shapes of Bellman's replay benches.

Compare with `cargo bench -p bellman-replay --bench replay` on the same machine (see docs/BENCHMARKS.md, "Replay").

    python3 -m venv /tmp/sb3-venv && /tmp/sb3-venv/bin/pip install stable-baselines3 cpprb
    /tmp/sb3-venv/bin/python scripts/bench_sb3_replay.py [--atari-cap 100000] [--skip-atari]

Buffers are filled by writing their arrays directly (sampling reads only the arrays, so this is what a full
buffer looks like to `sample`), with every page touched. SB3's Atari layout needs 2 x 4 x 84 x 84 bytes per
transition (56 GB for 1,000,000), so the Atari case uses a smaller capacity (default 100,000: 5.6 GB); its
sampling cost does not depend on the capacity once the buffer is far larger than the caches.
Timings: median over repeats of the mean time of `number` calls, in microseconds, on-CPU (time.thread_time:
the time on a core of its own, as the Rust benches report with BELLMAN_BENCH_CPU_TIME=1) and wall-clock.
"""
import argparse
import time
import timeit

import numpy as np


def med_us(fn, number, repeat=7):
    """'<on-CPU> us (wall <wall> us)': medians of the mean per call, on-CPU from time.thread_time."""
    cpu = float(np.median(timeit.repeat(fn, number=number, repeat=repeat, timer=time.thread_time)) / number * 1e6)
    wall = float(np.median(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6)
    return f"{cpu:.1f} us on-CPU (wall {wall:.1f} us)"


def sb3_cases(atari_cap, skip_atari):
    import gymnasium as gym
    import stable_baselines3
    import torch
    from stable_baselines3.common.buffers import ReplayBuffer

    torch.set_num_threads(1)  # Bellman's sampling is single-threaded too
    print(f"stable-baselines3 {stable_baselines3.__version__}, torch {torch.__version__} (1 thread), numpy {np.__version__}")
    rng = np.random.default_rng(0)
    cap = 1_000_000
    rb = ReplayBuffer(cap, gym.spaces.Box(-5, 5, (4,), np.float32), gym.spaces.Discrete(2), device="cpu")
    rb.observations[:] = rng.standard_normal(rb.observations.shape, dtype=np.float32)
    rb.next_observations[:] = rng.standard_normal(rb.next_observations.shape, dtype=np.float32)
    rb.actions[:] = rng.integers(0, 2, rb.actions.shape)
    rb.rewards[:] = 1.0
    rb.dones[:] = 0.0
    rb.full, rb.pos = True, 0
    for bs in (32, 256):
        print(f"sb3 ReplayBuffer.sample({bs}) cartpole 1M: {med_us(lambda: rb.sample(bs), 2000)}")
    del rb
    if skip_atari:
        return
    for optimize in (False, True):
        rb = ReplayBuffer(atari_cap, gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(6),
                          device="cpu", optimize_memory_usage=optimize,
                          handle_timeout_termination=not optimize)
        rb.observations[:] = rng.integers(0, 256, rb.observations.shape[-3:], dtype=np.uint8)
        if not optimize:
            rb.next_observations[:] = 7
        rb.full, rb.pos = True, 0
        nbytes = rb.observations.nbytes + (0 if optimize else rb.next_observations.nbytes)
        for bs in (32, 256):
            t = med_us(lambda: rb.sample(bs), 50)
            print(f"sb3 ReplayBuffer.sample({bs}) atari {atari_cap // 1000}k optimize_memory_usage={optimize}: "
                  f"{t} (obs arrays {nbytes / 1e9:.2f} GB, {nbytes / atari_cap:.0f} B/transition)")
        del rb


def cpprb_cases():
    try:
        import cpprb
    except ImportError:
        print("cpprb not installed: skipped")
        return
    rng = np.random.default_rng(1)
    cap = 1_000_000
    env_dict = {"obs": {"shape": 4}, "act": {"shape": 1, "dtype": np.int64}, "rew": {}, "next_obs": {"shape": 4},
                "done": {}}
    rb = cpprb.ReplayBuffer(cap, env_dict)
    chunk = 100_000
    for _ in range(cap // chunk):
        o = rng.standard_normal((chunk, 4), dtype=np.float32)
        rb.add(obs=o, act=np.zeros((chunk, 1), np.int64), rew=np.ones(chunk), next_obs=o, done=np.zeros(chunk))
    for bs in (32, 256):
        print(f"cpprb ReplayBuffer.sample({bs}) cartpole 1M: {med_us(lambda: rb.sample(bs), 2000)}")
    per = cpprb.PrioritizedReplayBuffer(cap, env_dict, alpha=0.6)
    for _ in range(cap // chunk):
        o = rng.standard_normal((chunk, 4), dtype=np.float32)
        per.add(obs=o, act=np.zeros((chunk, 1), np.int64), rew=np.ones(chunk), next_obs=o, done=np.zeros(chunk),
                priorities=rng.uniform(0.0, 10.0, chunk))
    for bs in (32, 512):
        td = rng.uniform(0.0, 10.0, bs)

        def step():
            s = per.sample(bs, beta=0.4)
            per.update_priorities(s["indexes"], td)

        print(f"cpprb PrioritizedReplayBuffer sample+update({bs}) cartpole 1M: {med_us(step, 500)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atari-cap", type=int, default=100_000)
    ap.add_argument("--skip-atari", action="store_true")
    ap.add_argument("--skip-sb3", action="store_true")
    a = ap.parse_args()
    if not a.skip_sb3:
        sb3_cases(a.atari_cap, a.skip_atari)
    cpprb_cases()


if __name__ == "__main__":
    main()
