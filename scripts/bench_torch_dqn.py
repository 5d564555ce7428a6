#!/usr/bin/env python3
"""PyTorch reference for `cargo bench -p bellman-agents --bench dqn` (docs/BENCHMARKS.md, "DQN"): one DQN gradient
update of the CartPole MLP 4-64-64-2 (batch 128 and 64; and 4-256-256-2 at batch 64), one greedy action at batch
1, and one Nature-CNN update at batch 32 (4x84x84 uint8 frames, 6 actions). One thread, medians.

The update is SB3's DQN.train step: target max under no_grad, Huber loss, Adam, clip_grad_norm_(10).

    python3 scripts/bench_torch_dqn.py
"""
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

torch.set_num_threads(1)


def mlp(hidden, obs=4, actions=2):
    layers, w = [], obs
    for h in hidden:
        layers += [nn.Linear(w, h), nn.ReLU()]
        w = h
    return nn.Sequential(*layers, nn.Linear(w, actions))


def nature_cnn(actions=6):
    return nn.Sequential(
        nn.Conv2d(4, 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(), nn.Conv2d(64, 64, 3, 1), nn.ReLU(),
        nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(), nn.Linear(512, actions))


def median_us(fn, iters, warmup=20):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e6


def update_fn(online, target, obs, next_obs, actions, rewards, dones, scale=None):
    opt = torch.optim.Adam(online.parameters(), lr=1e-4)

    def step():
        o, n = (obs.float() * scale, next_obs.float() * scale) if scale else (obs, next_obs)
        with torch.no_grad():
            y = rewards + 0.99 * (1 - dones) * target(n).max(dim=1).values
        q = online(o).gather(1, actions).squeeze(1)
        loss = F.smooth_l1_loss(q, y)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(online.parameters(), 10.0)
        opt.step()

    return step


def main():
    torch.manual_seed(0)
    for name, hidden, b in [("mlp64_update_b128", [64, 64], 128), ("mlp64_update_b64", [64, 64], 64),
                            ("mlp256_update_b64", [256, 256], 64)]:
        online, target = mlp(hidden), mlp(hidden)
        f = update_fn(online, target, torch.randn(b, 4), torch.randn(b, 4), torch.randint(0, 2, (b, 1)),
                      torch.randn(b), torch.zeros(b))
        print(f"{name}: {median_us(f, 2000):.1f} us")
    net = mlp([64, 64])
    x = torch.randn(4)

    def act():
        with torch.no_grad():
            return int(net(torch.as_tensor(x).unsqueeze(0)).argmax(dim=1)[0])

    print(f"act_b1: {median_us(act, 20000):.2f} us")
    online, target = nature_cnn(), nature_cnn()
    b = 32
    frames = torch.randint(0, 256, (b, 4, 84, 84), dtype=torch.uint8)
    f = update_fn(online, target, frames, frames, torch.randint(0, 6, (b, 1)), torch.randn(b), torch.zeros(b),
                  scale=1 / 255)
    print(f"nature_cnn_update_b32: {median_us(f, 30, warmup=3) / 1000:.1f} ms")


if __name__ == "__main__":
    main()
