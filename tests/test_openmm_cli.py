"""``transip-md md``: a short run on an xyz molecule and a periodic extxyz box, with CSV and trajectories."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from ase import Atoms
from ase.io import write

from transip_md.cli import main
from transip_md.model import TransIPConfig, export, random_model


def test_md_molecule_csv_xyz(tmp_path, capsys):
    cfg = TransIPConfig(cutoff=None, dtype="float64", d_model=16, n_heads=2, n_rope_freqs=1, elements=[1, 6, 8])
    model = export(random_model(cfg), tmp_path / "m.pt")
    mol = Atoms(
        "CH3OH",
        positions=[
            [0, 0, 0],
            [0.63, 0.63, 0.63],
            [-0.63, -0.63, 0.63],
            [-0.63, 0.63, -0.63],
            [1.2, -0.9, -0.8],
            [1.9, -0.6, -1.4],
        ],
    )
    write(tmp_path / "mol.xyz", mol)
    args = [
        "md",
        str(tmp_path / "mol.xyz"),
        "--model",
        str(model),
        "--steps",
        "40",
        "--report-interval",
        "10",
        "--csv",
        str(tmp_path / "log.csv"),
        "--trajectory",
        str(tmp_path / "traj.xyz"),
        "--quiet",
        "--platform",
        "Reference",
        "--timestep",
        "0.25",
        "--output",
        str(tmp_path / "final.pdb"),
    ]
    assert main(args) == 0
    rows = list(csv.reader(open(tmp_path / "log.csv")))
    assert len(rows) == 5 and "Temperature (K)" in rows[0][5]
    assert [int(r[0]) for r in rows[1:]] == [10, 20, 30, 40]
    assert np.all(np.isfinite(np.array([r[2:6] for r in rows[1:]], dtype=float)))
    assert open(tmp_path / "traj.xyz").read().count("step=") == 4
    assert (tmp_path / "final.pdb").exists()
    assert "40 steps" in capsys.readouterr().out


def test_md_periodic_box_dcd(tmp_path):
    cfg = TransIPConfig(cutoff=3.0, dtype="float32", d_model=16, n_heads=2, n_rope_freqs=1, elements=[1, 8])
    model = export(random_model(cfg), tmp_path / "m.pt")
    rng = np.random.default_rng(0)
    box = Atoms(
        "OH2" * 4, positions=rng.uniform(0, 7, (12, 3)), cell=[[7.0, 0, 0], [1.0, 7.2, 0], [0.5, 0.4, 7.1]], pbc=True
    )
    box.positions = np.repeat(rng.uniform(0, 7, (4, 3)), 3, axis=0) + np.tile(
        [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], (4, 1)
    )
    write(tmp_path / "box.extxyz", box)
    assert (
        main(
            [
                "md",
                str(tmp_path / "box.extxyz"),
                "--model",
                str(model),
                "--steps",
                "10",
                "--report-interval",
                "5",
                "--trajectory",
                str(tmp_path / "t.dcd"),
                "--integrator",
                "verlet",
                "--quiet",
                "--backend",
                "python",
            ]
        )
        == 0
    )
    assert (tmp_path / "t.dcd").stat().st_size > 0


def test_md_needs_a_model_when_none_is_shipped(tmp_path, monkeypatch):
    from transip_md.openmm import commands

    monkeypatch.setattr(commands, "default_model", lambda: None)
    write(tmp_path / "h2.xyz", Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]]))
    with pytest.raises(SystemExit, match="--model"):
        main(["md", str(tmp_path / "h2.xyz")])
