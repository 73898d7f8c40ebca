"""``transip-md md``: a short run on an xyz molecule and a periodic extxyz box, with CSV and trajectories."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from ase import Atoms
from ase.io import write
from conftest import CH2BR2_A, CH2BR2_Z, closest_distance

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


def test_md_minimize_small_molecule_with_the_shipped_model(tmp_path, capsys):
    """`--minimize` on CH2Br2: OpenMM's first minimiser step brings the two H within 0.03 Å; the force answers
    with the repulsive wall and the run goes on (docs/openmm.md; tests/test_openmm_minimize.py)."""
    write(tmp_path / "ch2br2.xyz", Atoms(numbers=CH2BR2_Z, positions=CH2BR2_A))
    args = ["md", str(tmp_path / "ch2br2.xyz"), "--minimize", "200", "--steps", "10", "--quiet"]
    args += ["--platform", "Reference", "--backend", "python", "--output", str(tmp_path / "final.pdb")]
    assert main(args) == 0
    assert "10 steps" in capsys.readouterr().out
    from openmm import unit
    from openmm.app import PDBFile

    final = PDBFile(str(tmp_path / "final.pdb")).getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    assert closest_distance(final) > 0.9  # every atom still where a molecule has it


@pytest.mark.parametrize("suffix", ["xyz", "pdb"])
def test_md_refuses_an_overlapping_structure_file(tmp_path, capsys, suffix):
    """The 0.1 Å input rule of every engine applies to the structure file (the force itself accepts its
    minimiser's trial points down to 0.01 Å), and the error names the file and the atoms."""
    mol = Atoms(
        "CH4", positions=[[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63], [-0.63, 0.63, -0.63], [0.6, 0.65, 0.6]]
    )
    path = tmp_path / f"bad.{suffix}"
    if suffix == "pdb":  # OpenMM's own writer (element columns OpenMM reads back)
        from openmm import unit
        from openmm.app import Element, PDBFile, Topology

        topology = Topology()
        residue = topology.addResidue("MOL", topology.addChain())
        for i, z in enumerate(mol.numbers):
            topology.addAtom(f"A{i}", Element.getByAtomicNumber(int(z)), residue)
        with open(path, "w") as fh:
            PDBFile.writeFile(topology, mol.positions * unit.angstrom, fh)
    else:
        write(path, mol)
    with pytest.raises(SystemExit) as info:
        main(["md", str(path), "--steps", "1", "--quiet", "--platform", "Reference"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"bad.{suffix}: atoms 1 (H) and 4 (H) overlap: distance 0.0469 Å < 0.1 Å" in err
