"""bench/equivariance.py is a study that spans sessions: a run killed between epochs must continue from its saved
state and end exactly where an uninterrupted run ends (same weights, same numbers), and the state must go away
once the run is recorded."""

from __future__ import annotations

import json

import pytest

from transip_md.data import legacy_dataset_path


class Killed(Exception):
    pass


def test_killed_study_run_resumes_to_the_same_result(tmp_path, monkeypatch, load_bench):
    bench = load_bench("equivariance")
    monkeypatch.chdir(tmp_path)  # the decompressed data copy goes to ./runs
    args = [
        "--data", str(legacy_dataset_path()), "--sizes", "24", "--seeds", "0", "--kinds", "local",
        "--modes", "augment", "--max-epochs", "4", "--patience", "10", "--val-frames", "8",
        "--d-model", "24", "--heads", "2", "--sym-structures", "2", "--sym-rotations", "2",
    ]  # fmt: skip
    bench.main([*args, "--out", str(tmp_path / "whole")])

    real_save, saves = bench._save_state, []

    def save_then_die(tr, fit):
        real_save(tr, fit)
        saves.append(tr.epoch)
        if len(saves) == 2:
            raise Killed  # the session ends after epoch 2

    monkeypatch.setattr(bench, "_save_state", save_then_die)
    with pytest.raises(Killed):
        bench.main([*args, "--out", str(tmp_path / "split")])
    state = tmp_path / "split" / "in_progress" / "local-augment-24-s0" / bench.STATE_FILE
    assert state.exists()
    assert not (tmp_path / "split" / "equivariance_runs.jsonl").exists()
    # the report of an unfinished study says so, and which run is part-trained
    bench.main([*args, "--out", str(tmp_path / "split"), "--report-only", "--modes", "augment,none"])
    report = (tmp_path / "split" / "equivariance.md").read_text()
    assert "Unfinished study: 0 of 2 runs done" in report
    assert "local/augment/24/s0 (2 epochs" in report and "Not started: local/none/24/s0" in report
    bench.main([*args, "--out", str(tmp_path / "split")])
    assert saves == [1, 2, 3, 4]  # epochs 3 and 4 ran after the restart, not 1 and 2 again
    assert not state.parent.exists()

    assert "Unfinished" not in (tmp_path / "split" / "equivariance.md").read_text()

    whole, split = (json.loads((tmp_path / d / "equivariance_runs.jsonl").read_text()) for d in ("whole", "split"))
    assert whole["run_budget_s"] == split["run_budget_s"] == 3600.0  # the default, recorded with each run
    for key in ("force_mae", "energy_mae", "sym_energy", "sym_force", "steps", "best_epoch", "epochs"):
        assert split[key] == whole[key], key
    assert [c["val_force_mae_meV_per_A"] for c in split["curve"]] == [
        c["val_force_mae_meV_per_A"] for c in whole["curve"]
    ]


def test_report_names_the_budget_each_run_had(load_bench):
    """Runs recorded before the budget was stored ran under the former default; the header counts each budget."""
    bench = load_bench("equivariance")
    args = bench.parse_args(["--run-budget", "500"])
    rows = [{}, {"run_budget_s": 10800.0}, {"run_budget_s": 10800.0}]
    assert bench.budgets(rows, args) == "3600 s (1 run), 10800 s (2 runs)"
    assert bench.budgets([], args) == "500 s"


def test_local_kind_can_have_its_own_sizes(load_bench):
    """--local-sizes gives the local kind other training-set sizes; runs go smaller sizes first."""
    bench = load_bench("equivariance")
    args = bench.parse_args(
        [
            "--sizes",
            "500,2000",
            "--local-sizes",
            "250,500",
            "--seeds",
            "0",
            "--modes",
            "augment",
            "--kinds",
            "global,local",
        ]
    )
    assert bench.wanted_runs(args) == [
        ("local", "augment", 250, 0),
        ("global", "augment", 500, 0),
        ("local", "augment", 500, 0),
        ("global", "augment", 2000, 0),
    ]
    args = bench.parse_args(["--sizes", "500,2000", "--seeds", "0", "--modes", "augment", "--kinds", "local"])
    assert [size for _, _, size, _ in bench.wanted_runs(args)] == [500, 2000]  # default: --sizes
