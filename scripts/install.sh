#!/usr/bin/env bash
# Install transip-md and everything its tests use, from scratch, into ./.venv (CPU machine).
#
#   bash scripts/install.sh            # main venv + LAMMPS plugin + ML-IAP LAMMPS + openmm-torch venv
#   TRANSIP_MINIMAL=1 bash scripts/install.sh   # main venv only (Python package, ASE, OpenMM, trainer)
#
# torch is pinned to 2.13.0 (the CPU build on this machine's disk) so pip never pulls another torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# pip's wheel cache would keep a second copy of every download (about 4 GB for the CUDA build of torch
# 2.12 that the openmm-torch venv needs): install without it.
export PIP_NO_CACHE_DIR=1
# Disk, checked before anything is installed rather than found short midway: the main venv takes about
# 3 GB with pip's working files, the openmm-torch venv about 5 GB (4.8 GB installed), the two LAMMPS
# builds 0.1 GB plus about 1 GB of build files while they compile (inside the 1 GB kept free for re-runs).
# A fresh full install peaks at about 8 GB; only the parts not yet installed are counted.
OPENMMTORCH_VENV=${TRANSIP_OPENMMTORCH_VENV:-build/openmmtorch-venv}
NEED_GB=0
[ -x .venv/bin/python ] || NEED_GB=3
if [ "${TRANSIP_MINIMAL:-0}" != "1" ] && [ ! -x "$OPENMMTORCH_VENV/bin/python" ]; then NEED_GB=$((NEED_GB + 5)); fi
[ "$NEED_GB" -gt 0 ] || NEED_GB=1
FREE_GB=$(df -Pk . | awk 'NR==2 {print int($4 / 1048576)}')
if [ "$FREE_GB" -lt "$NEED_GB" ]; then
  echo "install: about $NEED_GB GB of free disk is needed in $(pwd); only $FREE_GB GB is free." \
       "Free some space (or use TRANSIP_MINIMAL=1 for the Python package alone, about 3 GB)." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e '.[all]'
if [ "${TRANSIP_MINIMAL:-0}" = "1" ]; then exit 0; fi
# Each step runs with bash (its executable bit does not matter); a missing one is an error, not a skip.
for step in scripts/build-lammps-plugin.sh scripts/build-lammps-mliap.sh scripts/setup-openmmtorch-venv.sh; do
  if [ ! -f "$step" ]; then
    echo "install: $step is missing from this checkout; it is part of the full install" \
         "(TRANSIP_MINIMAL=1 installs the Python package alone)." >&2
    exit 1
  fi
  echo "install: $step"
  bash "$step"
done
