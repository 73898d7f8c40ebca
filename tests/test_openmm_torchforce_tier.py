"""Runs the real openmm-torch TorchForce tests (tests/openmmtorch_tier/) in build/openmmtorch-venv.

The main venv holds torch 2.13, for which no openmm-torch build exists; scripts/setup-openmmtorch-venv.sh
(called by scripts/install.sh) makes a second venv with torch 2.12 + acellera-openmmtorch-cpu 1.10 and
transip-md. A missing venv is a FAILURE (the torch backend would otherwise go untested), not a skip.
The tier runs in a subprocess, so a crash inside OpenMM/openmm-torch cannot take this process down.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from transip_md.model import TransIPConfig, export, random_model

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("TRANSIP_OPENMMTORCH_VENV", ROOT / "build" / "openmmtorch-venv"))


def test_torchforce_tier_in_second_venv(tmp_path):
    python = VENV / "bin" / "python"
    assert python.exists(), (
        f"{python} does not exist: run scripts/setup-openmmtorch-venv.sh (scripts/install.sh calls it) to create "
        "the torch 2.12 + openmm-torch venv that tests TransIPForce(backend='torch') for real"
    )
    # a model file written by THIS venv's torch (2.13) must load and run under torch 2.12 there
    cfg = TransIPConfig(cutoff=None, d_model=32, n_heads=2, elements=[1, 6, 7, 8], dtype="float64")
    model213 = export(random_model(cfg, seed=5), tmp_path / "torch213.pt")
    spread_cfg = TransIPConfig(
        cutoff=3.5, d_model=32, n_heads=2, elements=[1, 6, 7, 8], dtype="float64", learned_charge_spread=True
    )
    spread213 = export(random_model(spread_cfg, seed=6), tmp_path / "spread213.pt")
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        TRANSIP_TORCH213_MODEL=str(model213),
        TRANSIP_TORCH213_SPREAD_MODEL=str(spread213),
        PYTHONDONTWRITEBYTECODE="1",
    )
    proc = subprocess.run(
        [
            str(python),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "ignore::DeprecationWarning",
            f"--basetemp={tmp_path / 'tier'}",  # never rotate (delete) other pytest runs' temp dirs
            str(ROOT / "tests" / "openmmtorch_tier" / "tier_torchforce.py"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, f"openmm-torch tier failed (exit {proc.returncode}):\n{output}"
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, output
