#!/bin/bash
# Bellman's GPU-machine check (docs/GPU.md), about 9.5 minutes: DQN kernels on CUDA vs CPU vs PyTorch, CartPole DQN
# on CUDA and CPU, Ape-X collection throughput on all cores, and a time-boxed Pong DQN on CUDA.
# Prepare on the build machine (no GPU needed):
#   scripts/build-cuda.sh --features atari && mkdir -p .devcarry/roms
#   strip -o .devcarry/bellman target-cuda/release/bellman && xz -T2 .devcarry/bellman     # carry limit 64 MiB
#   cargo test --release -p bellman-agents --test actors_throughput --no-run   # copy the printed binary to
#   .devcarry/actors_throughput; copy pong.bin (ale-py's roms folder) to .devcarry/roms/
# then on the GPU machine, from the repository root: bash scripts/gpu-check.sh  (results in $OUT or /tmp/out).
set -u
B=$PWD/.devcarry; OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; RUNS=/tmp/runs
exec > >(tee "$OUT/log.txt") 2>&1
CU=$(python3 -c 'import nvidia;print(list(nvidia.__path__)[0])')/cu13/lib
[ -e "$CU/libcublas.so.13" ] || CU=$(dirname "$(find / -name libcublas.so.13 2>/dev/null | head -1)")
echo "CUDA libs: $CU"
export LD_LIBRARY_PATH=$CU:${LD_LIBRARY_PATH:-}
export ALE_ROMS_DIR=$B/roms
[ -e $B/bellman ] || python3 -c "import lzma,shutil;shutil.copyfileobj(lzma.open('$B/bellman.xz'),open('$B/bellman','wb'))"; chmod +x $B/bellman $B/actors_throughput; ls -la $B
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
sec() { echo; echo "=== $1 [t=$(el)s] $(date -u +%H:%M:%S)"; }
sec env
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
nproc; lscpu | grep -E "Model name|Socket|Thread|Core" ; free -g | head -2
ldd $B/bellman | grep -E "cuda|cublas|curand|libz|font|not found"; ldconfig -p | grep -c fontconfig
sec "bench dqn cuda"
timeout 90 $B/bellman bench dqn --device cuda || { echo "CUDA BENCH FAILED rc=$?"; }
sec "bench dqn cpu (1 thread)"
RAYON_NUM_THREADS=1 timeout 60 $B/bellman bench dqn --device cpu
sec "bench dqn cpu (default threads = all cores)"
RAYON_NUM_THREADS=$(nproc) timeout 60 $B/bellman bench dqn --device cpu --iters 100 --only mlp64_update_b128,mlp256_update_b64,nature_cnn_update_b32
sec "torch cuda"
timeout 90 python3 scripts/bench_torch_dqn.py --device cuda
sec "torch cpu (1 thread)"
timeout 60 python3 scripts/bench_torch_dqn.py --device cpu
sec "cartpole-dqn on cuda (seed 0)"
timeout 150 $B/bellman train cartpole-dqn --device cuda --seed 0 --out $RUNS/cuda --plain 2>&1 | tail -25
grep -vE '^ +[0-9.]+,?$' $RUNS/cuda/cartpole-dqn/seed-0/summary.json
sec "cartpole-dqn on cpu (seed 0)"
timeout 60 $B/bellman train cartpole-dqn --device cpu --seed 0 --out $RUNS/cpu --plain 2>&1 | tail -8
grep -vE '^ +[0-9.]+,?$' $RUNS/cpu/cartpole-dqn/seed-0/summary.json
sec "actors throughput"
RAYON_NUM_THREADS=1 BELLMAN_ACTORS=1,2,4,8,14 BELLMAN_IDLE_STEPS=2000000 timeout 100 $B/actors_throughput --ignored --nocapture collection_throughput
LEFT=$(( 560 - $(el) )); [ $LEFT -gt 330 ] && LEFT=330
sec "pong-dqn-fast on cuda, time-boxed ${LEFT}s"
timeout --foreground -s INT $LEFT $B/bellman train pong-dqn-fast --device cuda --seed 0 --out $RUNS/pong --plain \
  --set eval.every_steps=50000 --set eval.episodes=3 2>&1 | tail -40
sleep 3
sec "collect"
ls -laR $RUNS | head -60
tar czf "$OUT/runs.tgz" --exclude="*.safetensors" -C $RUNS . && ls -la "$OUT"
nvidia-smi --query-gpu=memory.used --format=csv
