#!/usr/bin/env python3
"""PyTorch reference for `cargo bench -p bellman-agents --bench dqn` (docs/BENCHMARKS.md, "DQN"): one DQN gradient
update of the CartPole MLP 4-64-64-2 (batch 128 and 64; and 4-256-256-2 at batch 64), one greedy action at batch
1, and one Nature-CNN update at batch 32 (4x84x84 uint8 frames, 6 actions). One thread, medians.

The update is SB3's DQN.train step: target max under no_grad, Huber loss, Adam, clip_grad_norm_(10).

    python3 scripts/bench_torch_dqn.py                 # CPU, one thread (docs/BENCHMARKS.md)
    python3 scripts/bench_torch_dqn.py --device cuda   # GPU (docs/GPU.md; compare `bellman bench dqn --device cuda`)

On CUDA every timed iteration ends with torch.cuda.synchronize(), as `bellman bench dqn` reads the gradient norm back.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

torch.set_num_threads(1)
DEV = torch.device("cpu")


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()


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
    sync()
    ts = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e6


def update_fn(online, target, obs, next_obs, actions, rewards, dones, scale=None):
    opt = torch.optim.Adam(online.parameters(), lr=1e-4)

    # The batch lives on the host, as a replay buffer's sample does (SB3 moves it with torch.as_tensor(device)).
    def step():
        o, n, a, r, d = (t.to(DEV) for t in (obs, next_obs, actions, rewards, dones))
        o, n = (o.float() * scale, n.float() * scale) if scale else (o, n)
        with torch.no_grad():
            y = r + 0.99 * (1 - d) * target(n).max(dim=1).values
        q = online(o).gather(1, a).squeeze(1)
        loss = F.smooth_l1_loss(q, y)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(online.parameters(), 10.0)
        opt.step()

    return step


def main():
    global DEV
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    DEV = torch.device(ap.parse_args().device)
    print(f"device {DEV}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    torch.manual_seed(0)
    for name, hidden, b in [("mlp64_update_b128", [64, 64], 128), ("mlp64_update_b64", [64, 64], 64),
                            ("mlp256_update_b64", [256, 256], 64)]:
        online, target = mlp(hidden).to(DEV), mlp(hidden).to(DEV)
        f = update_fn(online, target, torch.randn(b, 4), torch.randn(b, 4), torch.randint(0, 2, (b, 1)),
                      torch.randn(b), torch.zeros(b))
        print(f"{name}: {median_us(f, 2000):.1f} us")
    net = mlp([64, 64]).to(DEV)
    x = torch.randn(4)

    def act():
        with torch.no_grad():
            return int(net(torch.as_tensor(x).unsqueeze(0).to(DEV)).argmax(dim=1)[0])

    print(f"act_b1: {median_us(act, 20000):.2f} us")
    online, target = nature_cnn().to(DEV), nature_cnn().to(DEV)
    b = 32
    frames = torch.randint(0, 256, (b, 4, 84, 84), dtype=torch.uint8)
    f = update_fn(online, target, frames, frames, torch.randint(0, 6, (b, 1)), torch.randn(b), torch.zeros(b),
                  scale=1 / 255)
    print(f"nature_cnn_update_b32: {median_us(f, 30, warmup=3) / 1000:.1f} ms")


if __name__ == "__main__":
    main()
