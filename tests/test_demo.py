"""The README's main job (`transip-md demo`) at a tiny size: every stage runs and writes its outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from transip_md.model import load_compiled


def test_demo_main_job_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "transip_md.cli", "demo", "--output", str(out)]
    cmd += ["--epochs", "1", "--max-frames", "40", "--eval-frames", "10", "--md-steps", "40"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = load_compiled(out / "train" / "model.pt")
    assert trained.metadata["provenance"]["data_hash"]
    assert "F MAE" in proc.stdout  # the evaluation table of the shipped model
    summary = json.loads((out / "summary.json").read_text())
    nve = summary["nve"]
    assert nve["n"] >= 4
    # 40 steps of 0.5 fs NVE of a ~20-atom molecule: the total energy must stay within 1 kJ/mol
    # (kinetic energy alone is ~ 3/2 N kT = 75 kJ/mol; a broken integrator/force drifts by far more).
    assert abs(nve["drift_kJ_per_mol"]) < 1.0 and nve["std_kJ_per_mol"] < 1.0
