#!/usr/bin/env python3
"""numpy-vectorised value iteration on the maze of agents/benches/value_iteration.rs, for docs/BENCHMARKS.md.

Same problem, cell for cell: a SIDE x SIDE grid (default 1000), cell i a wall when splitmix64(i ^ 0x5EED) % 5 == 0
(start 0 and goal SIDE*SIDE-1 never), actions left/down/right/up, a move off the grid or into a wall stays put,
reward -1 per move, the goal and the walls absorbing with value 0, gamma 0.99, synchronous sweeps from V = 0 until
max |V_new - V| < 1e-6. One sweep is 4 gathers + maximum in float64, the usual vectorised formulation.

    python3 scripts/bench_numpy_vi.py [SIDE] [--sweeps-only]

Prints the per-sweep time (median of 20 sweeps), the number of sweeps, the total time and V(start): the Rust
bench prints the same sweep count and V(start).
"""
import sys
import time

import numpy as np

GAMMA, TOL, SEED = 0.99, 1e-6, 0x5EED


def splitmix64(x):
    """SplitMix64 (Steele, Lea and Flood 2014) on a uint64 array (numpy's uint64 arithmetic wraps)."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def build(side):
    n = side * side
    idx = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        wall = splitmix64(idx ^ np.uint64(SEED)) % np.uint64(5) == 0
    wall[0] = wall[n - 1] = False
    s = np.arange(n, dtype=np.int64)
    r, c = s // side, s % side
    moves = [
        np.where(c > 0, s - 1, s),  # left
        np.where(r + 1 < side, s + side, s),  # down
        np.where(c + 1 < side, s + 1, s),  # right
        np.where(r > 0, s - side, s),  # up
    ]
    nxt = [np.where(wall[t], s, t) for t in moves]
    absorbing = wall.copy()
    absorbing[n - 1] = True
    return nxt, absorbing


def sweep(v, nxt, absorbing):
    q = v[nxt[0]]
    for t in nxt[1:]:
        np.maximum(q, v[t], out=q)
    v_new = -1.0 + GAMMA * q
    v_new[absorbing] = 0.0
    return v_new


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    side = int(args[0]) if args else 1000
    nxt, absorbing = build(side)
    n = side * side
    v = np.zeros(n)
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        v = sweep(v, nxt, absorbing)
        times.append(time.perf_counter() - t0)
    per_sweep = sorted(times)[len(times) // 2]
    print(f"numpy {np.__version__}, maze {side}x{side}: {per_sweep * 1e3:.2f} ms per sweep (median of 20)")
    if "--sweeps-only" in sys.argv:
        return
    v = np.zeros(n)
    t0 = time.perf_counter()
    sweeps = 0
    while True:
        v_new = sweep(v, nxt, absorbing)
        sweeps += 1
        delta = np.max(np.abs(v_new - v))
        v = v_new
        if delta < TOL:
            break
    total = time.perf_counter() - t0
    print(f"converged in {sweeps} sweeps, {total:.2f} s ({total / sweeps * 1e3:.2f} ms per sweep incl. the delta), "
          f"V(start) = {v[0]:.6f}")


if __name__ == "__main__":
    main()
