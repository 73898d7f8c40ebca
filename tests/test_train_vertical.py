"""The vertical-gap loss (energy differences between the charge/spin states of one geometry): its value, the
batching that keeps a geometry's states together, and data-parallel training with it equal to one process."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from transip_md.data import default_dataset_path
from transip_md.train.data import geometry_key, load_compact, make_batches, read_frames, write_compact
from transip_md.train.losses import vertical_gap_loss


def test_vertical_gap_loss_is_the_error_of_the_energy_differences():
    errors = torch.tensor([0.3, 0.1, 0.5, -0.2, 0.7], dtype=torch.float64)  # E - E* per structure, eV
    geometry = torch.tensor([0, 0, 1, 1, 2])
    # two states: (gap error)^2 / 2 each; a structure alone in its geometry adds nothing
    expected = (0.3 - 0.1) ** 2 / 2 + (0.5 + 0.2) ** 2 / 2
    assert float(vertical_gap_loss(errors, geometry)) == pytest.approx(expected, rel=1e-12)
    shifted = errors + torch.tensor([1.0, 1.0, -2.0, -2.0, 5.0], dtype=torch.float64)
    assert float(vertical_gap_loss(shifted, geometry)) == pytest.approx(expected, rel=1e-12)  # per-geometry offset


@pytest.fixture(scope="module")
def whole_molecules(tmp_path_factory):
    """Every frame of six small training molecules of the shipped set (so their vertical groups are whole)."""
    a = load_compact(default_dataset_path())
    first_atom = np.concatenate([[0], np.cumsum(a["mol_natoms"])])
    frame_atom = np.concatenate([[0], np.cumsum(a["mol_natoms"][a["frame_mol"]])])
    picked = [k for k in np.flatnonzero(~a["mol_heldout"]) if a["mol_natoms"][k] <= 14][:6]
    parts = []
    for k in picked:
        rows = np.flatnonzero(a["frame_mol"] == k)
        n = int(a["mol_natoms"][k])

        def take(key, rows=rows, n=n):
            return np.stack([a[key][frame_atom[r] : frame_atom[r] + n] for r in rows])

        parts.append({
            "numbers": a["mol_numbers"][first_atom[k] : first_atom[k] + n].astype(np.int64),
            "positions": take("positions"), "forces": take("forces"), "energy": a["energy"][rows],
            "charge": a["charge"][rows], "spin": a["spin"][rows], "sampler": a["sampler"][rows],
            "param": a["param"][rows], "geometry": np.unique(a["geometry"][rows], return_inverse=True)[1],
        })  # fmt: skip
    path = tmp_path_factory.mktemp("vertical") / "whole.npz"
    write_compact(
        path, [str(a["mol_id"][k]) for k in picked], [str(a["mol_smiles"][k]) for k in picked],
        [str(a["mol_source"][k]) for k in picked], [False] * len(picked), parts,
        [str(s) for s in a["sampler_names"]], {"note": "cut from the shipped set by tests/test_train_vertical.py"},
    )  # fmt: skip
    return path


def test_batches_keep_the_states_of_a_geometry_together(whole_molecules):
    frames, _ = read_frames([whole_molecules])
    ids = list(range(len(frames)))
    groups: dict[tuple, set[int]] = {}
    for i in ids:
        groups.setdefault(geometry_key(frames[i], i), set()).add(i)
    assert max(len(g) for g in groups.values()) == 4  # the four states of the first thermal geometry
    batches = make_batches(ids, frames, max_atoms=64, rng=np.random.default_rng(3), keep_geometries=True)
    assert sorted(i for b in batches for i in b) == ids
    where = {i: n for n, b in enumerate(batches) for i in b}
    for members in groups.values():
        assert len({where[i] for i in members}) == 1, members
    plain = make_batches(ids, frames, max_atoms=64, rng=np.random.default_rng(3))
    split = sum(len({n for n, b in enumerate(plain) if set(b) & g}) > 1 for g in groups.values())
    assert split > 0  # without the option the states of some geometries land in different batches


def _train(cmd_prefix, data, out):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        *cmd_prefix, "-m", "transip_md.cli", "train", "--data", str(data), "-o", str(out), "--epochs", "2",
        "--dtype", "float64", "--max-atoms", "64", "--d-model", "16", "--layers", "1", "--heads", "2",
        "--set", "model.n_rope_freqs=1", "--set", "model.n_rbf=16", "--threads", "1", "--no-progress",
        "--no-plots", "--warmup-steps", "3", "--vertical-weight", "0.1", "--val-fraction", "0.2", "--deterministic",
    ]  # fmt: skip
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    with open(out / "log.csv") as fh:
        return list(csv.DictReader(fh))


def test_torchrun_two_processes_match_one_with_the_vertical_loss(tmp_path, whole_molecules):
    """Each process takes whole geometries, so the loss and the update equal the one-process ones."""
    pytest.importorskip("torch.distributed.run")
    one = _train([sys.executable], whole_molecules, tmp_path / "one")
    two = _train(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29519"],
        whole_molecules,
        tmp_path / "two",
    )
    assert len(one) == len(two) == 2
    assert list(two[0]) == list(one[0])  # the same log columns
    assert float(one[0]["train_loss_vertical"]) > 0.0
    for a, b in zip(one, two, strict=True):
        for key in ("train_loss", "train_loss_vertical", "val_force_mae_meV_per_A", "val_energy_mae_meV"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-9, abs=1e-12), key


def test_data_without_geometry_ids_is_reported(tmp_path, caplog, whole_molecules):
    """extxyz frames carry no geometry ids: --vertical-weight says its loss is 0 instead of silently doing nothing."""
    from transip_md.data import legacy_dataset_path
    from transip_md.train.config import TrainConfig
    from transip_md.train.trainer import Trainer

    def build(data):
        model = {"d_model": 16, "n_layers": 1, "n_heads": 2, "n_rope_freqs": 1, "n_rbf": 16, "cutoff": 4.0}
        cfg = TrainConfig(data=[str(data)], output=str(tmp_path), vertical_weight=0.1, model=model, progress=False)
        caplog.clear()
        with caplog.at_level("INFO", logger="transip_md.train.trainer"):
            Trainer(cfg)
        return caplog.text

    assert "the vertical-gap loss is 0" in build(legacy_dataset_path())
    assert "vertical-gap loss: " in build(whole_molecules)
