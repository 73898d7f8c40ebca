"""bench/ring_geometry.py: the ring measures on a known hexagon, its errors, and a short end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def bench(load_bench, monkeypatch):
    module = load_bench("ring_geometry")
    monkeypatch.syspath_prepend(str(Path(module.__file__).parent))  # it imports md_stability's bond check
    return module


def _hexagon(side: float, pucker: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A P3N3 six-ring of ``side`` Å, atoms alternately ``pucker`` Å above and below the plane."""
    phi = np.arange(6) * np.pi / 3
    z = pucker * (-1.0) ** np.arange(6)
    positions = np.stack([side * np.cos(phi), side * np.sin(phi), z], axis=1)  # a regular hexagon's radius = side
    return np.array([15, 7] * 3), positions


def test_a_planar_regular_ring_has_120_degree_angles(bench):
    numbers, positions = _hexagon(1.6)
    g = bench.ring_geometry(numbers, positions, 15, 7)
    assert g["bond_A"] == pytest.approx(1.6)
    assert g["angle_aba_deg"] == pytest.approx(120.0) and g["angle_bab_deg"] == pytest.approx(120.0)
    assert g["angle_sum_deg"] == pytest.approx(720.0)
    assert g["aa_A"] == pytest.approx(1.6 * np.sqrt(3.0))  # across one N: 2 x side x sin 60°


def test_a_puckered_ring_has_a_smaller_angle_sum(bench):
    numbers, positions = _hexagon(1.6, pucker=0.25)
    assert bench.ring_geometry(numbers, positions, 15, 7)["angle_sum_deg"] < 715.0


def test_no_ring_is_named(bench):
    numbers, positions = _hexagon(1.6)
    with pytest.raises(ValueError, match="no such ring"):
        bench.ring_geometry(numbers, positions, 15, 8)
    with pytest.raises(SystemExit, match="unknown element symbol"):
        bench.main(["--ring", "P", "Xx", "--no-reference"])


def test_end_to_end_gfn2_and_the_shipped_model(bench, tmp_path):
    """Both engines relax Cl6N3P3; the ring stays a P3N3 ring near GFN2-xTB's size (P-N within 0.05 Å)."""
    out = tmp_path / "ring"
    assert bench.main(["--steps", "100", "--output", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["engines"]
    assert [r["engine"] for r in rows][0] == "GFN2-xTB" and len(rows) == 2
    assert abs(rows[0]["bond_A"] - rows[1]["bond_A"]) < 0.05
    assert all(690.0 < r["angle_sum_deg"] <= 720.0 for r in rows)
    assert "| GFN2-xTB |" in out.with_suffix(".md").read_text()
