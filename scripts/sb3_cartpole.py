#!/usr/bin/env python3
"""Stable-Baselines3 DQN on CartPole-v1 with rl-baselines3-zoo's tuned hyperparameters: the reference that
`bellman train cartpole-dqn --seeds 0..10` is compared with in docs/BENCHMARKS.md ("DQN").

Same protocol as Bellman's runner: 50,000 env steps, a greedy evaluation of 20 episodes every 2,500 steps on a
separate env, and the wall-clock time (training only, evaluation excluded) and step at which the evaluation mean
first reaches 475. One torch thread, as Bellman runs one candle thread per run.

    pip install stable-baselines3==2.* gymnasium torch
    python3 scripts/sb3_cartpole.py --seeds 0-9
"""
import argparse
import statistics
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy

# rl-baselines3-zoo hyperparams/dqn.yml, CartPole-v1.
HYPER = dict(
    learning_rate=2.3e-3,
    batch_size=64,
    buffer_size=100_000,
    learning_starts=1000,
    gamma=0.99,
    target_update_interval=10,
    train_freq=256,
    gradient_steps=128,
    exploration_fraction=0.16,
    exploration_final_eps=0.04,
    policy_kwargs=dict(net_arch=[256, 256]),
)


class EvalTimer(BaseCallback):
    def __init__(self, every, episodes, seed_offset, seed):
        super().__init__()
        self.every, self.episodes = every, episodes
        self.eval_env = gym.make("CartPole-v1")
        self.eval_seed = seed + seed_offset
        self.train_time = 0.0
        self.train_cpu = 0.0  # process CPU seconds, for comparisons on a loaded machine
        self.t0 = self.c0 = None
        self.solved = None
        self.curve = []

    def _on_training_start(self):
        self.t0, self.c0 = time.perf_counter(), time.process_time()

    def _on_step(self):
        if self.num_timesteps % self.every == 0:
            self.train_time += time.perf_counter() - self.t0
            self.train_cpu += time.process_time() - self.c0
            self.eval_env.reset(seed=self.eval_seed)
            mean, _ = evaluate_policy(self.model, self.eval_env, n_eval_episodes=self.episodes, deterministic=True)
            self.curve.append((self.num_timesteps, mean))
            if mean >= 475 and self.solved is None:
                self.solved = (self.num_timesteps, self.train_time, self.train_cpu)
            self.t0, self.c0 = time.perf_counter(), time.process_time()
        return True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", default="0-9")
    p.add_argument("--steps", type=int, default=50_000)
    p.add_argument("--net", default="256,256", help="hidden sizes (rl-zoo: 256,256; Bellman's config: 64,64)")
    a = p.parse_args()
    lo, hi = (int(x) for x in a.seeds.split("-"))
    torch.set_num_threads(1)
    HYPER["policy_kwargs"] = dict(net_arch=[int(h) for h in a.net.split(",")])
    solved = []
    for seed in range(lo, hi + 1):
        env = gym.make("CartPole-v1")
        model = DQN("MlpPolicy", env, seed=seed, device="cpu", **HYPER)
        cb = EvalTimer(2500, 20, 1000, seed)
        t = time.perf_counter()
        model.learn(total_timesteps=a.steps, callback=cb)
        total = time.perf_counter() - t
        print(f"seed {seed}: learn() {total:.1f}s (with evals), train {cb.train_time:.1f}s "
              f"({cb.train_cpu:.1f} CPU s), first >= 475 (step, train s, train CPU s) {cb.solved}, evals {[round(m) for _, m in cb.curve]}", flush=True)
        if cb.solved:
            solved.append(cb.solved)
    n = hi - lo + 1
    if solved:
        print(f"solved {len(solved)}/{n}; median step {statistics.median(s[0] for s in solved)}, "
              f"median train seconds to solved {statistics.median(s[1] for s in solved):.1f} "
              f"({statistics.median(s[2] for s in solved):.1f} CPU s)")
    else:
        print(f"solved 0/{n}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
