"""bench/pair_contact_md.py: which pairs it watches, its statistics, its errors, and a short end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CH2BR2_A, CH2BR2_Z


@pytest.fixture
def bench(load_bench, monkeypatch):
    module = load_bench("pair_contact_md")
    monkeypatch.syspath_prepend(str(Path(module.__file__).parent))  # it imports md_stability's bond check
    return module


def test_only_non_bonded_pairs_of_the_two_elements_are_watched(bench):
    # Br-C-Br (geminal): the C-Br pairs are bonded, the Br...Br pair (3.2 Å) is not; H is ignored
    numbers = np.array([6, 35, 35, 1])
    positions = np.array([[0.0, 0, 0], [1.94, 0, 0], [-0.65, 1.83, 0], [-0.4, -0.5, 0.9]])
    assert bench.watched_pairs(numbers, positions, 35, 35) == [(1, 2)]
    assert bench.watched_pairs(numbers, positions, 6, 35) == []
    assert bench.closest(positions, [(1, 2), (0, 1)]) == pytest.approx(1.94)


def test_summary_counts_time_below_the_limit(bench):
    run = {"engine": "m", "seed": 0, "relaxed_A": 2.8, "series_A": [2.8, 2.7, 2.5, 2.9], "wall_s": 1.0}
    row = bench.summarise(run, limit_A=2.6, record_fs=10.0)
    assert row["first_below_limit_ps"] == pytest.approx(0.03)  # the third record, 30 fs
    assert row["fraction_below_limit"] == pytest.approx(0.25)
    assert row["min_A"] == pytest.approx(2.5) and row["mean_A"] == pytest.approx(2.725)
    never = bench.summarise({**run, "series_A": [2.8, 2.9]}, limit_A=2.6, record_fs=10.0)
    assert never["first_below_limit_ps"] is None and never["fraction_below_limit"] == 0.0


def test_an_unknown_molecule_or_element_is_named(bench):
    with pytest.raises(SystemExit, match="first_5K-0.*held-out"):
        bench.main(["--molecule", "first_5K-0", "--no-reference"])
    with pytest.raises(SystemExit, match="Xx"):
        bench.main(["--pair", "P", "Xx", "--no-reference"])


def test_a_short_run_reports_every_engine_and_seed(bench, tmp_path):
    from transip_md.data import default_model_path

    out = tmp_path / "contact"
    model = str(default_model_path())
    bench.main(["--ps", "0.03", "--seeds", "0", "1", "--models", model, "--output", str(out), "--processes", "1"])
    report = json.loads(out.with_suffix(".json").read_text())
    assert [(r["engine"], r["seed"]) for r in report["runs"]] == [
        ("GFN2-xTB", 0),
        ("GFN2-xTB", 1),
        (model, 0),
        (model, 1),
    ]
    assert report["meta"]["formula"] == "Cl6N3P3" and report["meta"]["n_pairs"] == 3
    assert report["meta"]["limit_A"] == pytest.approx(1.2 * 2 * 1.07)  # ASE's covalent radius of P
    for r in report["runs"]:  # the ring's P...P distances are about 2.7-2.8 Å
        assert 2.5 < r["min_A"] <= r["mean_A"] < 3.0
    assert "| GFN2-xTB | 1 |" in out.with_suffix(".md").read_text()


def test_seed_zero_repeats_exactly(bench):
    """OpenMM reads seed 0 as 'random each time'; the benches map it to a fixed seed, so a seed-0 run repeats."""
    from transip_md.data import default_model_path

    job = (str(default_model_path()), np.array(CH2BR2_Z), CH2BR2_A, [(1, 2)], 300.0, 0.05, 1.0, 10.0, 0)
    first, second = bench.run_model(job), bench.run_model(job)
    assert first["series_A"] == second["series_A"]
    other = bench.run_model(job[:-1] + (1,))
    assert other["series_A"] != first["series_A"]
