#!/usr/bin/env bash
# Create build/openmmtorch-venv: a second venv where openmm-torch's TorchForce really runs on the CPU.
#
# The main venv holds torch 2.13 CPU, for which no openmm-torch wheel exists. This venv holds
#   torch 2.12.* + openmm 8.6.1 + acellera-openmmtorch-cpu 1.10 (TorchForce, Reference and CPU platforms)
# and transip-md itself (installed --no-deps, editable) with the pure-Python packages it needs, so that
# tests/openmmtorch_tier/ can run TransIPForce(backend='torch') for real.
#
# Idempotent: a venv whose stamp matches this script's requirements is left alone (re-running only
# refreshes the editable transip-md install). Set TRANSIP_OPENMMTORCH_VENV to use another location.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TRANSIP_OPENMMTORCH_VENV:-build/openmmtorch-venv}
PY=${PYTHON:-python3}
REQS="torch==2.12.* openmm==8.6.1 acellera-openmmtorch-cpu==1.10"
# Pure-Python (or torch-independent) dependencies of transip-md used by the OpenMM layer and its tests.
# torch is listed with the same pin so pip can never upgrade it to 2.13.
DEPS="numpy>=1.26 ase>=3.23 vesin>=0.3 openmmml==1.8 pyyaml>=6 tqdm>=4.66 pytest>=8"
STAMP="$VENV/.transip-openmmtorch-stamp"
WANT="$REQS | $DEPS"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && "$VENV/bin/python" -c "import openmmtorch, torch" 2>/dev/null; then
  echo "setup-openmmtorch-venv: $VENV is up to date"
else
  if [ ! -x "$VENV/bin/python" ]; then
    mkdir -p "$(dirname "$VENV")"
    "$PY" -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q --upgrade pip
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q $REQS
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q "torch==2.12.*" $DEPS
  echo "$WANT" > "$STAMP"
fi
"$VENV/bin/pip" install -q --no-deps -e .
"$VENV/bin/python" - <<'PY'
import importlib.metadata

import openmm
import openmmtorch
import torch

import transip_md.openmm  # noqa: F401

assert torch.__version__.startswith("2.12"), torch.__version__
print(f"setup-openmmtorch-venv: torch {torch.__version__}, openmm {openmm.__version__}, "
      f"acellera-openmmtorch-cpu {importlib.metadata.version('acellera-openmmtorch-cpu')} OK")
PY
