#!/usr/bin/env bash
# Sets up everything the `atari` feature needs (Debian/Ubuntu):
#   * a C++17 compiler and zlib headers (apt: g++ zlib1g-dev) to compile ALE 0.12.1;
#   * the ale-py 0.12.1 wheel, whose ale_py/roms/*.bin are the ROMs found at run time;
#   * cmake and scikit-build-core, which pip needs to read the metadata of the ale-py sdist that
#     ale/build.rs downloads (`pip download ale-py==0.12.1 --no-binary :all: --no-deps --no-build-isolation`).
# Set ALE_SRC_DIR to an unpacked ale-py-0.12.1 sdist to build offline, ALE_ROMS_DIR to use another ROM folder.
set -euo pipefail
PYTHON="${PYTHON:-python3}"
if ! dpkg -s g++ zlib1g-dev >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends g++ zlib1g-dev
fi
"$PYTHON" -m pip install "ale-py==0.12.1" "cmake>=3.15" "scikit-build-core>=0.10"
"$PYTHON" -c "import ale_py, os; d = os.path.join(os.path.dirname(ale_py.__file__), 'roms'); print('ROMs:', d, len([f for f in os.listdir(d) if f.endswith('.bin')]), 'files')"
echo "Atari setup done: cargo test -p bellman-envs --features atari"
