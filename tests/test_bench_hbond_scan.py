"""bench/hbond_scan.py: push and squeeze scans of intramolecular hydrogen bonds, model against GFN2-xTB."""

from __future__ import annotations

import json

import numpy as np
import pytest


def test_a_false_well_is_a_fall_after_the_maximum(load_bench):
    bench = load_bench("hbond_scan")
    assert not bench.false_well(np.array([0.0, 0.3, 0.9, 1.4, 1.6]))  # rises all the way
    assert not bench.false_well(np.array([0.0, 1.0, 1.56, 1.5]))  # falls by 0.06 eV: within the margin
    assert bench.false_well(np.array([0.0, 1.1, 1.56, 1.44, 1.28, 1.22]))  # stage 14 on acetylurea (docs/training.md)


@pytest.mark.slow
def test_scan_of_the_smallest_heldout_molecule_with_the_motif(load_bench, tmp_path):
    pytest.importorskip("tblite")
    from transip_md.data import default_model_path

    bench = load_bench("hbond_scan")
    model = str(default_model_path())
    prefix = tmp_path / "scan"
    bench.main(["--models", model, "--n", "1", "--output", str(prefix)])
    report = json.loads(prefix.with_suffix(".json").read_text())
    (row,) = report["rows"]
    assert row["mol_id"] and row["start_h_a_A"] < bench.FORMED_A
    assert all(r["start_h_a_A"] >= bench.FORMED_A for r in report["not_formed"])
    push = row["push"]
    # the push goes closer than the start, step by step, and GFN2-xTB charges energy for it (eV)
    assert push["target_A"] == sorted(push["target_A"], reverse=True) and push["target_A"][-1] == 1.0
    assert len(push["gfn2_eV"]) == len(push[model]) == len(push["target_A"])
    assert push["gfn2_eV"][-1] > 0.3
    summary = report["summary"][model]
    errors = [abs(p - g) for k in ("push", "squeeze") for p, g in zip(row[k][model], row[k]["gfn2_eV"], strict=True)]
    assert np.isclose(summary["max_abs_error_eV"], max(errors))
    assert model in prefix.with_suffix(".md").read_text()
