"""bench/accuracy_vs_mace.py keeps each side's finished result, so a failure elsewhere loses no training run."""

from __future__ import annotations


def test_a_finished_side_is_stored_and_reused_only_for_the_same_job(tmp_path, monkeypatch, load_bench):
    bench = load_bench("accuracy_vs_mace")
    calls = []

    def fake_mace(job):
        calls.append(job["budget_s"])
        return {"curve": [{"time_s": 1.0, "val_force_mae_meV_per_A": 300.0}], "wall_s": 2.0, "preds": {"7": [1.5, []]}}

    monkeypatch.setattr(bench, "run_mace", fake_mace)
    job = {
        "data": None, "train_frames": None, "val_frames": 5, "seed": 0, "budget_s": 60.0, "workdir": str(tmp_path),
        "transip_args": "--epochs 1", "data_path": "set.npz", "mace_eval_every_s": 10.0, "mace_charge_spin": True,
    }  # fmt: skip
    first = bench.side_result(job, "mace")
    assert calls == [60.0] and (tmp_path / "mace" / "result.json.gz").exists()
    assert bench.side_result(job, "mace") == first  # reused: not trained again
    assert bench.side_result({**job, "transip_args": "--epochs 2"}, "mace") == first  # the other side's settings
    assert calls == [60.0]
    bench.side_result({**job, "budget_s": 120.0}, "mace")  # a different budget trains again
    bench.side_result({**job, "budget_s": 120.0, "mace_charge_spin": False}, "mace")
    assert calls == [60.0, 120.0, 120.0]


def test_the_force_loss_option_reaches_both_sides_and_keys_the_stored_result(tmp_path, monkeypatch, load_bench):
    bench = load_bench("accuracy_vs_mace")
    job = {
        "data": None, "train_frames": None, "val_frames": 5, "seed": 0, "budget_s": 60.0, "workdir": str(tmp_path),
        "transip_args": "--epochs 1", "data_path": "set.npz", "mace_eval_every_s": 10.0, "mace_charge_spin": True,
    }  # fmt: skip
    assert "--force-loss" not in bench.transip_command(job)  # jobs without the option: the squared error
    assert bench.side_force_weight(job, "transip") == 1.0 and bench.side_force_weight(job, "mace") == 10.0
    sl1 = {**job, "force_loss": "smooth_l1", "force_loss_beta": 0.02}
    cmd = bench.transip_command(sl1)
    flags = cmd[cmd.index("--force-loss") :]
    assert flags[:6] == ["--force-loss", "smooth_l1", "--force-loss-beta", "0.02", "--force-weight", "0.5"]
    assert cmd.index("--force-weight") < cmd.index("--epochs")  # --transip-args come last, so they win
    assert bench.side_force_weight(sl1, "mace") == 5.0

    calls = []

    def fake_mace(job):
        calls.append(job.get("force_loss", "mse"))
        return {"curve": [], "wall_s": 1.0, "preds": {}}

    monkeypatch.setattr(bench, "run_mace", fake_mace)
    bench.side_result(job, "mace")  # stored before the option existed: keyed as the squared error
    bench.side_result({**job, "force_loss": "mse", "force_loss_beta": 0.05}, "mace")  # the same job: reused
    bench.side_result(sl1, "mace")  # another loss trains again
    assert calls == ["mse", "smooth_l1"]
