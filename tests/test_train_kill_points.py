"""Kill points of a training run (issue 14 #2, #12, #13): a run killed after or inside any checkpoint write,
then resumed, exports the same model.pt, log.csv and best.pt as a run that was never killed.

The kills are simulated in-process: the checkpoint write is patched to raise a BaseException right after
(or, leaving the temporary file a real SIGKILL would leave, inside) a chosen write. One test kills a real
``transip-md train`` process before its first checkpoint and resumes it with ``--resume RUN`` alone.
"""

from __future__ import annotations

import csv
import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from ase.io import iread, write

from transip_md.data import legacy_dataset_path
from transip_md.model import load_compiled
from transip_md.train import checkpoint as ckpt_mod
from transip_md.train.config import TrainConfig
from transip_md.train.trainer import Trainer, lr_lambda_factory

EPOCHS = 3
MODEL = {"d_model": 16, "n_layers": 1, "n_heads": 2, "n_rope_freqs": 1, "n_rbf": 16, "cutoff": 5.0}


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing in the trainer handles it."""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """32 frames spread over the first 320 of the shipped data set (several molecules)."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.extxyz"
    with gzip.open(legacy_dataset_path(), "rt") as fh:
        frames = list(iread(fh, index="0:320:10", format="extxyz"))
    assert len({a.info["mol_id"] for a in frames}) >= 4
    write(path, frames, format="extxyz")
    return path


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        data=[str(data)],
        output=str(out),
        epochs=EPOCHS,
        max_frames=16,
        max_val_frames=4,
        max_atoms=100,
        lr=5e-3,
        warmup_steps=2,
        equivariance="none",
        model=dict(MODEL),
        threads=1,
        progress=False,
        plots=False,
        symmetry_structures=1,
        symmetry_rotations=2,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory):
    """A run that was never killed: its result, model.pt parameters and log.csv rows."""
    out = tmp_path_factory.mktemp("reference")
    result = Trainer(_cfg(tiny, out)).fit()
    # the kill point only matters when the last epoch is the best one
    maes = [h["val_force_mae_meV_per_A"] for h in result["history"]]
    assert min(maes) == maes[-1], maes
    return result, _params(out / "model.pt"), _rows(out / "log.csv")


def _params(path: Path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in load_compiled(path).module.state_dict().items()}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _kill_at(monkeypatch, name: str, epoch: int, inside: bool) -> None:
    """Raise Killed at the write of ``name`` holding 0-based ``epoch``: after it, or inside it (the file is
    not replaced and a 0-byte temporary is left behind, as SIGKILL inside torch.save leaves it)."""
    real = ckpt_mod.save_atomic

    def save(obj, path):
        path = Path(path)
        hit = path.name == name and int(obj["epoch"]) == epoch
        if hit and inside:
            (path.parent / f"{path.name}.k1ll3d.tmp").write_bytes(b"")
            raise Killed(f"inside {name}")
        real(obj, path)
        if hit:
            raise Killed(f"after {name}")

    monkeypatch.setattr(ckpt_mod, "save_atomic", save)


@pytest.mark.parametrize(
    "name, epoch, inside",
    [
        ("last.pt", EPOCHS - 1, False),  # the kill point: last.pt of the final epoch written, best.pt not
        ("best.pt", EPOCHS - 1, False),  # both written, log.csv and model.pt not
        ("last.pt", 0, True),  # inside the very first checkpoint write
        ("last.pt", 1, True),  # inside a later one
    ],
)
def test_killed_run_resumes_to_the_same_outputs(tiny, tmp_path, reference, monkeypatch, name, epoch, inside):
    result, ref_params, ref_rows = reference
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        _kill_at(m, name, epoch, inside)
        with pytest.raises(Killed):
            Trainer(_cfg(tiny, out)).fit()
    assert not (out / "model.pt").exists()
    resumed = Trainer(_cfg(tiny, out, resume=str(out))).fit()
    meta = load_compiled(out / "model.pt").metadata["provenance"]
    assert meta["epoch"] == EPOCHS - 1  # 0-based: the best (last) epoch, not the older best.pt
    assert resumed["best_epoch"] == EPOCHS
    params = _params(out / "model.pt")
    assert params.keys() == ref_params.keys()
    for key, value in ref_params.items():
        assert torch.equal(params[key], value), key
    assert ckpt_mod.load_checkpoint(out / "best.pt")["epoch"] == EPOCHS - 1
    rows = _rows(out / "log.csv")
    assert [r["epoch"] for r in rows] == [r["epoch"] for r in ref_rows]
    for got, want in zip(rows, ref_rows, strict=True):
        assert float(got["val_force_mae_meV_per_A"]) == pytest.approx(float(want["val_force_mae_meV_per_A"]), rel=1e-9)
    assert sorted(p.name for p in out.glob("*.tmp")) == []


def test_stale_best_pt_is_rederived_from_last(tiny, tmp_path):
    """A best.pt older than the best epoch recorded in last.pt (the state of the issue) is rewritten at export."""
    out = tmp_path / "run"
    Trainer(_cfg(tiny, out, epochs=2)).fit()
    last = ckpt_mod.load_checkpoint(out / "last.pt")
    assert last["best"]["epoch"] == 1
    stale = dict(ckpt_mod.best_checkpoint(last), epoch=0)
    ckpt_mod.save_atomic(stale, out / "best.pt")
    Trainer(_cfg(tiny, out, epochs=2, resume=str(out))).fit()
    assert ckpt_mod.load_checkpoint(out / "best.pt")["epoch"] == 1
    assert load_compiled(out / "model.pt").metadata["provenance"]["epoch"] == 1


def test_resume_applies_a_new_learning_rate_and_length(tiny, tmp_path):
    out = tmp_path / "run"
    Trainer(_cfg(tiny, out, epochs=1)).fit()
    tr = Trainer(_cfg(tiny, out, epochs=4, lr=1e-3, resume=str(out)))
    fn = lr_lambda_factory(tr.cfg.warmup_steps, tr.total_steps, tr.cfg.min_lr_ratio)
    assert tr.step > 0 and tr.total_steps == 4 * tr.steps_per_epoch
    for group in tr.optimizer.param_groups:
        assert group["lr"] == pytest.approx(1e-3 * fn(tr.step), rel=1e-12)
    assert tr.scheduler.base_lrs == [1e-3] * len(tr.optimizer.param_groups)


def test_resume_of_a_run_without_checkpoint_starts_at_epoch_one(tiny, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt.abc.tmp").write_bytes(b"")  # left by a kill inside the first write
    tr = Trainer(_cfg(tiny, out, epochs=1, resume=str(out)))
    assert tr.epoch == 0 and tr.step == 0
    assert not list(out.glob("*.tmp"))
    tr.fit()
    assert ckpt_mod.load_checkpoint(out / "last.pt")["epoch"] == 0


def test_real_kill_before_the_first_checkpoint_then_resume_alone(tiny, tmp_path):
    """SIGKILL a real `transip-md train` after it wrote config.json and before last.pt; `--resume RUN` alone
    (no other flag) continues it with the run's config.json."""
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    flags = ["--data", str(tiny), "-o", str(out), "--epochs", "2", "--max-atoms", "100", "--d-model", "16"]
    flags += ["--heads", "2", "--layers", "1", "--set", "model.n_rope_freqs=1", "--set", "model.n_rbf=16"]
    flags += ["--equivariance", "none", "--threads", "1", "--no-progress", "--no-plots", "--seed", "3"]
    cmd = [sys.executable, "-m", "transip_md.cli", "train"]
    proc = subprocess.Popen([*cmd, *flags], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and not (out / "config.json").exists() and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None and not (out / "last.pt").exists(), "run finished its first epoch before the kill"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = subprocess.run([*cmd, "--resume", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "no checkpoint yet" in done.stdout
    last = ckpt_mod.load_checkpoint(out / "last.pt")
    assert last["epoch"] == 1 and last["train_config"]["seed"] == 3 and last["model_config"]["d_model"] == 16
    assert len(_rows(out / "log.csv")) == 2 and (out / "model.pt").is_file()
