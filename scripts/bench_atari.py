"""Atari env throughput of the Python references, to compare with Bellman's
`cargo test --release -p bellman-envs --features atari --test atari_throughput -- --ignored --nocapture`.

Same pipeline everywhere: Pong v5, sticky actions 0.25, no-op reset (30), max-pool frame skip 4,
84x84 grayscale INTER_AREA, 4 stacked frames, uniform random actions. Prints agent steps/s.

    python3 scripts/bench_atari.py [steps]      # needs gymnasium, ale-py==0.12.1, opencv-python-headless, envpool
"""
import sys
import time

import numpy as np

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 5000


def gymnasium_pipeline():
    import ale_py
    import gymnasium as gym
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    gym.register_envs(ale_py)
    env = gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.25)
    env = FrameStackObservation(AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84), 4)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    c = time.thread_time()
    for _ in range(STEPS):
        _, _, term, trunc, _ = env.step(int(rng.integers(6)))
        if term or trunc:
            env.reset()
    dt = time.perf_counter() - t
    cpu = time.thread_time() - c
    print(f"Gymnasium AtariPreprocessing + FrameStack, 1 env: {STEPS / dt:.0f} agent steps/s, on-CPU {STEPS / cpu:.0f}")


def envpool_pipeline(num_envs=8, num_threads=2):
    import envpool

    env = envpool.make(
        "Pong-v5",
        env_type="gymnasium",
        num_envs=num_envs,
        batch_size=num_envs,
        num_threads=num_threads,
        seed=0,
        noop_max=30,
        stack_num=4,
        img_height=84,
        img_width=84,
        repeat_action_probability=0.25,
        episodic_life=False,
        reward_clip=False,
    )
    env.reset()
    rng = np.random.default_rng(0)
    n = STEPS // num_envs * 2
    t = time.perf_counter()
    c = time.process_time()
    for _ in range(n):
        env.step(rng.integers(0, 6, num_envs))
    dt = time.perf_counter() - t
    cpu = time.process_time() - c
    print(
        f"EnvPool Pong-v5, {num_envs} envs, {num_threads} thread(s): {n * num_envs / dt:.0f} agent steps/s, "
        f"{n * num_envs / cpu:.0f} agent steps per CPU-second"
    )


if __name__ == "__main__":
    gymnasium_pipeline()
    for threads in (1, 2):
        envpool_pipeline(8, threads)
