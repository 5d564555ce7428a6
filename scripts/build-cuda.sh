#!/usr/bin/env bash
# Builds `bellman` with the `cuda` feature on a machine WITHOUT a CUDA toolkit or GPU (docs/GPU.md), for a GPU
# machine with NVIDIA driver 580 (CUDA 13.0). With a CUDA toolkit installed, `cargo build --release --features
# cuda` is all you need; this script is for build machines that have none.
#
#   scripts/build-cuda.sh [extra cargo args, e.g. --features atari]
#
# Puts the toolkit pieces from PyPI in $CUDA_VENV, makes a CUDA_HOME in $CUDA_ROOT (unversioned .so links and a
# libcuda stub: the real driver library replaces it at run time), and builds into target-cuda/ (a binary built
# with `cuda` does not start on a machine without the NVIDIA driver, so it gets its own target directory).
# CUDA_COMPUTE_CAP defaults to 90 (H100/H200); there is no nvidia-smi here to ask.
set -euo pipefail
cd "$(dirname "$0")/.."
CUDA_VENV=${CUDA_VENV:-$HOME/.cache/bellman/cuda-venv}
CUDA_ROOT=${CUDA_ROOT:-$HOME/.cache/bellman/cuda-root}
if ! ls "$CUDA_VENV"/lib/python3*/site-packages/nvidia/cu13/bin/nvcc >/dev/null 2>&1; then
  python3 -m venv "$CUDA_VENV"
  # CUDA 13.0 = what driver 580 supports; nvcc must not be newer than the driver (it JITs PTX of its version).
  "$CUDA_VENV/bin/pip" install -q nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88 nvidia-cublas==13.0.2.14 \
    nvidia-curand==10.4.0.35 nvidia-cuda-cccl==13.0.85
fi
CU=$(ls -d "$CUDA_VENV"/lib/python3*/site-packages/nvidia/cu13 | head -1)
mkdir -p "$CUDA_ROOT/lib64"
ln -sfn "$CU/bin" "$CUDA_ROOT/bin"
ln -sfn "$CU/include" "$CUDA_ROOT/include"
for l in cublas cublasLt curand nvrtc cudart; do
  ln -sf "$(ls "$CU"/lib/lib$l.so.* | grep -v alt | head -1)" "$CUDA_ROOT/lib64/lib$l.so"
done
if [ ! -e "$CUDA_ROOT/lib64/libcuda.so" ]; then
  cargo fetch
  # candle links libcuda at link time and no wheel ships it: a stub with every driver symbol cudarc names.
  CUDARC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* | tail -1)
  grep -o 'pub unsafe fn cu[A-Za-z0-9_]*' "$CUDARC/src/driver/sys/mod.rs" | sed 's/pub unsafe fn //' | sort -u \
    | awk '{print "void " $1 "(void){}"}' > "$CUDA_ROOT/libcuda_stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$CUDA_ROOT/lib64/libcuda.so" "$CUDA_ROOT/libcuda_stub.c"
fi
PATH="$CUDA_ROOT/bin:$PATH" CUDA_HOME="$CUDA_ROOT" CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90} \
  CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target-cuda} cargo build --release --features cuda "$@"
echo "built ${CARGO_TARGET_DIR:-target-cuda}/release/bellman; at run time put the CUDA 13 libraries (libcublas.so.13,"
echo "libcudart.so.13, libcurand.so.10) on LD_LIBRARY_PATH, e.g. the cu13/lib folder of a PyTorch cu130 install."
