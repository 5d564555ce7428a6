#!/bin/bash
# The CPU-side checks of the replay and actors issues on a lent device machine's cores (no GPU used), about 3
# minutes: Ape-X collection throughput and channel overhead with 1..14 actors (docs/BENCHMARKS.md, "Parallel
# actors"), and the 1M-transition Atari replay sample against a bare gather of its frames (docs/BENCHMARKS.md,
# "Replay": the sample is memory-bound, so a machine with more memory bandwidth is the test of its goal).
# Prepare on the build machine (no GPU or CUDA needed):
#   mkdir -p .devcarry
#   cargo test --release -p bellman-agents --test actors_throughput --no-run   # copy the printed executable to
#     .devcarry/actors_throughput
#   cargo bench -p bellman-replay --bench replay --no-run                      # copy the printed executable to
#     .devcarry/replay_bench
# then on the device machine, from the repository root (carry .devcarry): bash scripts/host-check.sh
set -u
B=$PWD/.devcarry; OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
exec > >(tee "$OUT/host-check.txt") 2>&1
chmod +x "$B/actors_throughput" "$B/replay_bench"
T0=$(date +%s); sec() { echo; echo "=== $1 [t=$(( $(date +%s) - T0 ))s] $(date -u +%H:%M:%S)"; }
sec machine
nproc; lscpu | grep -E "Model name|Socket|Thread|Core|L2|L3"; free -g | head -2; uptime
sec "actors throughput (defaults: 64-transition messages, 64-message channel)"
RAYON_NUM_THREADS=1 BELLMAN_ACTORS=1,2,4,8,14 BELLMAN_IDLE_STEPS=4000000 BELLMAN_TRAIN_STEPS=20000 timeout 150 \
  "$B/actors_throughput" --ignored --nocapture collection_throughput
sec "replay: 1M Atari transitions, sample 32 vs bare gathers (fills 7.4 GB first, about 20 s)"
cd "$OUT" && BELLMAN_BENCH_ATARI_CAP=1000000 timeout 240 "$B/replay_bench" --bench --warm-up-time 1 \
  --measurement-time 3 "uniform_atari_1000k/(sample_32|sample_window_32|memcpy|gather)"
uptime
