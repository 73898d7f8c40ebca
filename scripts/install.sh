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
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e '.[all]'
if [ "${TRANSIP_MINIMAL:-0}" = "1" ]; then exit 0; fi
for step in scripts/build-lammps-plugin.sh scripts/build-lammps-mliap.sh scripts/setup-openmmtorch-venv.sh; do
  if [ -x "$step" ]; then
    echo "install: $step"
    "$step"
  fi
done
