"""bench/bond_dissociation.py: --molecules picks the bonds of named held-out molecules; the report lists every scan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


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
