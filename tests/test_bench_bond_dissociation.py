"""bench/bond_dissociation.py: --molecules picks the bonds of named held-out molecules; the report lists every scan."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase.calculators.calculator import Calculator, all_changes


def _bromomethane(shift: float) -> tuple[np.ndarray, np.ndarray]:
    """CH3Br (Å): C-Br 1.94, C-H 1.09."""
    z = np.array([6, 35, 1, 1, 1])
    pos = np.array(
        [[0, 0, 0], [1.94, 0, 0], [-0.36, 1.03, 0], [-0.36, -0.51, 0.89], [-0.36, -0.51, -0.89]], dtype=float
    )
    return z, pos + shift


def test_only_named_molecules_are_scanned_and_an_unknown_id_is_named(load_bench, monkeypatch):
    bench = load_bench("bond_dissociation")
    monkeypatch.syspath_prepend(str(Path(bench.__file__).parent))  # it imports md_stability's bond check
    small = ("small", *_bromomethane(0.0))
    other = ("other", *_bromomethane(5.0))
    picked = bench.pick([small, other], per_type=3, only=["other"])
    assert [m[0] for m in picked["C-Br"]] == ["other"] and [m[0] for m in picked["C-H"]] == ["other"]
    assert {m[0] for m in bench.pick([small, other], per_type=3)["C-Br"]} == {"small", "other"}
    with pytest.raises(SystemExit, match="first_5K-0"):
        bench.pick([small, other], per_type=3, only=["other", "first_5K-0"])


def test_the_report_lists_each_scan_at_the_shown_scales(tmp_path, load_bench):
    bench = load_bench("bond_dissociation")
    gfn2 = [0.4 + 0.1 * k for k in range(len(bench.SCALES))]
    model = [e / 2 for e in gfn2]
    row = {
        "mol_id": "m1", "formula": "CH3Br", "r0_A": 1.94, "gfn2_eV": gfn2, "model_eV": model, "max_error_eV": 0.5,
        "gfn2_rise_eV": gfn2[bench.SCALES.index(bench.RISE_TO)], "model_rise_eV": model[bench.SCALES.index(1.3)],
        "model_rises": True,
    }  # fmt: skip
    text = bench.write_report({"C-Br": [row]}, {"command": "x", "model": "m.pt", "data": []}, tmp_path / "r")
    k = bench.SCALES.index(1.2)
    line = next(ln for ln in text.splitlines() if ln.startswith("| C-Br | m1 |"))
    assert f"{model[k]:.2f} / {gfn2[k]:.2f}" in line and line.count("/") == 3  # 1.1x, 1.2x, 1.3x


def _bromoform() -> tuple[np.ndarray, np.ndarray]:
    """CHBr3 (Å): C-Br 1.93 at the tetrahedral angle, C-H 1.09."""
    z = np.array([6, 35, 35, 35, 1])
    dirs = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float) / np.sqrt(3.0)
    return z, np.vstack([[0, 0, 0], 1.93 * dirs[:3], 1.09 * dirs[3]])


class _PairRepulsion(Calculator):
    """A tiny ASE calculator: E = sum over pairs of 1/r (eV, Å), enough to order bent geometries."""

    implemented_properties = ["energy"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        d = atoms.get_all_distances()
        self.results["energy"] = float(np.sum(1.0 / d[np.triu_indices(len(atoms), 1)]))


def test_geminal_bromines_are_found_and_bent_shut(tmp_path, load_bench, monkeypatch):
    from ase import Atoms

    bench = load_bench("bond_dissociation")
    monkeypatch.syspath_prepend(str(Path(bench.__file__).parent))
    z, pos = _bromoform()
    pairs = bench.close_geminal_pairs(z, pos)
    assert len(pairs) == 3 and all(c == 0 and z[i] == z[j] == 35 for i, c, j in pairs)  # no pair with the H
    assert bench.close_geminal_pairs(*_bromomethane(0.0)) == []  # one heavy neighbour: nothing to bend
    energies, distances = bench.bend(Atoms(numbers=z, positions=pos), pairs[0], _PairRepulsion())
    k0 = bench.BENDS_DEG.index(0.0)
    assert energies[k0] == 0.0 and distances[k0] == pytest.approx(np.linalg.norm(pos[1] - pos[2]), abs=1e-9)
    assert np.all(np.diff(distances) > 0)  # -20 deg is the shortest contact, +5 the longest
    assert energies[0] > energies[1] > energies[2] > 0  # closing the angle costs repulsion
    i, c, j = pairs[0]
    row = {
        "mol_id": "m2", "formula": "CHBr3", "pair": "Br-C-Br", "atoms": [i, c, j], "angle_deg": 109.5,
        "check_A": bench.check_distance(35, 35), "distance_A": distances.tolist(), "gfn2_eV": energies.tolist(),
        "model_eV": (energies / 2).tolist(),
    }  # fmt: skip
    text = bench.write_report({}, {"command": "x", "model": "m.pt", "data": []}, tmp_path / "r", bent=[row])
    line = next(ln for ln in text.splitlines() if ln.startswith("| Br-C-Br"))
    assert f"{distances[0]:.2f}: {energies[0] / 2:.2f} / {energies[0]:.2f}" in line and "/ 2.88 |" in line
    stored = json.loads((tmp_path / "r.json").read_text())
    assert stored["rows"] == {} and stored["bends"][0]["distance_A"] == pytest.approx(distances.tolist())
