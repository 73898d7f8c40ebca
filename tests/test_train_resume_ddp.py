"""Exact resume after SIGKILL, and 2-process torchrun (gloo) == 1 process for the same global batch."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from transip_md.data import legacy_dataset_path

COMMON = [
    "--max-atoms", "100", "--d-model", "16",
    "--layers", "1", "--heads", "2", "--set", "model.n_rope_freqs=1", "--set", "model.n_rbf=16",
    "--threads", "1", "--no-progress", "--no-plots", "--equivariance", "learned", "--warmup-steps", "3",
    "--deterministic",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """32 frames spread over the shipped data set (small file: fast start-up of each subprocess)."""
    from ase.io import read, write

    frames = read(legacy_dataset_path(), index="::40")
    path = tmp_path_factory.mktemp("tiny") / "tiny.extxyz"
    write(path, frames, format="extxyz")
    return ["--data", str(path)]


def _train(args, data, wait=True):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "transip_md.cli", "train", *COMMON, *data, *args]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    subprocess.run(cmd, env=env, check=True, capture_output=True)


def test_kill_and_resume_gives_identical_weights(tmp_path, tiny):
    full = tmp_path / "full"
    _train(["--epochs", "4", "-o", str(full)], tiny)
    part = tmp_path / "part"
    proc = _train(["--epochs", "4", "-o", str(part)], tiny, wait=False)
    deadline = time.time() + 240
    while time.time() < deadline:  # wait for the first epoch's checkpoint, then kill mid-run
        if (part / "last.pt").exists() and proc.poll() is None:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(part / "last.pt", weights_only=True)["epoch"]
    assert killed_at < 3
    _train(["--epochs", "4", "-o", str(part), "--resume", str(part)], tiny)
    a = torch.load(full / "last.pt", weights_only=True)
    b = torch.load(part / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3 and a["step"] == b["step"]
    for key in ("model_state", "ema_state", "transform_state"):
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), (key, name)


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_torchrun_two_processes_match_one(tmp_path, tiny):
    pytest.importorskip("torch.distributed.run")
    one = tmp_path / "one"
    two = tmp_path / "two"
    args = ["--epochs", "2", "--dtype", "float64"]
    _train([*args, "-o", str(one)], tiny)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
        "-m", "transip_md.cli", "train", *COMMON, *tiny, *args, "-o", str(two),
    ]  # fmt: skip
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    r1, r2 = _rows(one / "log.csv"), _rows(two / "log.csv")
    assert len(r1) == len(r2) == 2
    assert list(r2[0]) == list(r1[0])  # the same log columns (no all-zero loss parts that one process lacks)
    for a, b in zip(r1, r2, strict=True):
        for key in ("val_force_mae_meV_per_A", "val_energy_mae_meV", "train_loss", "val_sym_force_rms_meV_per_A"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-9, abs=1e-9), key
