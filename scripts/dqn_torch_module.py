#!/usr/bin/env python3
"""The PyTorch module equivalent to Bellman's DQN Q-network, and a check that a Bellman checkpoint loads into it.

Bellman writes DQN weights (`runs/<exp>/seed-<n>/checkpoints/*.safetensors`) with the tensor names of this
module's `state_dict` (agents/src/dqn/network.rs documents the mapping):

    features.0, features.2, ...   hidden Linear layers (activation modules at the odd indices), [out, in]
    q                             output head (plain)
    value, advantage              dueling head: Q = V + A - mean(A)

Usage:
    python3 scripts/dqn_torch_module.py CHECKPOINT.safetensors --obs-dim 4 --hidden 64,64 --actions 2 \
        [--dueling] [--activation relu|tanh] [--obs 0.1,0.2,0.3,0.4 --expect q0,q1]

Loads the checkpoint with `safetensors.torch.load_file` + `load_state_dict(strict=True)`, prints the Q-values of
`--obs`, and with `--expect` exits non-zero unless they match to 1e-4 (agents/tests/dqn_torch_compat.rs runs
it when torch is installed).
"""
import argparse
import sys

import torch
from safetensors.torch import load_file
from torch import nn


class QNet(nn.Module):
    def __init__(self, obs_dim, hidden, n_actions, dueling=False, activation="relu"):
        super().__init__()
        act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
        layers, width = [], obs_dim
        for h in hidden:
            layers += [nn.Linear(width, h), act()]
            width = h
        self.features = nn.Sequential(*layers)
        self.dueling = dueling
        if dueling:
            self.value = nn.Linear(width, 1)
            self.advantage = nn.Linear(width, n_actions)
        else:
            self.q = nn.Linear(width, n_actions)

    def forward(self, x):
        h = self.features(x)
        if self.dueling:
            a = self.advantage(h)
            return self.value(h) + a - a.mean(dim=-1, keepdim=True)
        return self.q(h)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("checkpoint")
    p.add_argument("--obs-dim", type=int, required=True)
    p.add_argument("--hidden", default="64,64")
    p.add_argument("--actions", type=int, required=True)
    p.add_argument("--dueling", action="store_true")
    p.add_argument("--activation", default="relu")
    p.add_argument("--obs")
    p.add_argument("--expect")
    a = p.parse_args()
    hidden = [int(h) for h in a.hidden.split(",") if h]
    net = QNet(a.obs_dim, hidden, a.actions, a.dueling, a.activation)
    net.load_state_dict(load_file(a.checkpoint), strict=True)
    if a.obs:
        x = torch.tensor([[float(v) for v in a.obs.split(",")]])
        q = net(x)[0].tolist()
        print("q", q)
        if a.expect:
            want = [float(v) for v in a.expect.split(",")]
            if len(want) != len(q) or any(abs(x - y) > 1e-4 for x, y in zip(q, want)):
                print(f"mismatch: torch {q} vs bellman {want}", file=sys.stderr)
                sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
