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
    reused = {**first, "reused_from": str(tmp_path / "mace")}  # reused: not trained again, and marked as such
    assert "reused_from" not in first and bench.side_result(job, "mace") == reused
    assert bench.side_result({**job, "transip_args": "--epochs 2"}, "mace") == reused  # the other side's settings
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


def _report(seed: int, transip_f: float, mace_f: float, budget_s: float = 3000.0) -> dict:
    def model(f: float) -> dict:
        m = {"force_mae_meV_per_A": f, "energy_mae_meV_per_atom": f / 10.0, "frames": 4}
        ev = {"overall": m, "per_state": {"+0/1": m}, "vertical": {"ionisation_energy": {"mae_eV": f / 1000.0}}}
        if seed > 0:  # reports since 2026-12-04 also break forces down by element
            ev["per_element"] = {"H": {"atoms": 3, "force_mae_meV_per_A": f / 2.0, "zero_force_mae_meV_per_A": 9.0}}
        return ev

    command = f"/venv/python -m transip_md.cli train --data /x/set.npz -o runs/s{seed}/transip --set split_seed={seed} "
    meta = {
        "budget_s": budget_s, "mace_charge_spin": True, "force_loss": "smooth_l1", "force_loss_beta": 0.05,
        "held_frames": 4, "held_molecules": 2, "transip_command": command + f"--seed {seed} --lr 3e-3",
    }  # fmt: skip
    return {"meta": meta, "evaluation": {"TransIP": model(transip_f), "MACE": model(mace_f)}}


def test_reports_of_several_seeds_are_summarised_with_mean_spread_and_paired_difference(tmp_path, load_bench):
    import json

    import pytest

    bench = load_bench("accuracy_vs_mace")
    paths = []
    for seed, (t, m) in enumerate([(220.0, 200.0), (180.0, 200.0), (200.0, 200.0)]):
        paths.append(tmp_path / f"s{seed}.json")
        paths[-1].write_text(json.dumps(_report(seed, t, m)))
    text = bench.summarize_reports([str(p) for p in paths])
    assert "| TransIP | 220.0 / 180.0 / 200.0 | 200.0 ± 20.0 |" in text  # sample standard deviation
    assert "+10.0 % / -10.0 % / +0.0 %; mean +0.0 % (standard error 5.8 %)" in text
    assert "(200.0 meV/Å) is at or below MACE's (200.0)" in text
    assert "| +0/1 | 200.0 | 200.0 |" in text and "| ionisation_energy | 0.200 | 0.200 |" in text
    assert "mean over the 2 report(s)" in text and "| H | 95.0 | 100.0 |" in text  # seeds 1 and 2 have elements
    assert bench.element_table(_report(1, 220.0, 200.0)["evaluation"])[2] == "| H | 3 | 110.0 | 100.0 | 9.0 |"

    other = tmp_path / "other.json"  # another budget: a different setting, refused with its name and key
    other.write_text(json.dumps(_report(3, 150.0, 200.0, budget_s=1200.0)))
    with pytest.raises(SystemExit, match="other.json: budget_s"):
        bench.summarize_reports([str(paths[0]), str(other)])
    changed = _report(4, 150.0, 200.0)
    changed["meta"]["transip_command"] = changed["meta"]["transip_command"].replace("3e-3", "1e-3")
    other.write_text(json.dumps(changed))
    with pytest.raises(SystemExit, match="TransIP recipe differs"):
        bench.summarize_reports([str(paths[0]), str(other)])
    with pytest.raises(SystemExit, match="same seed"):
        bench.summarize_reports([str(paths[0]), str(paths[0])])


def test_the_report_says_when_a_side_was_read_back_instead_of_trained(tmp_path, load_bench):
    import json

    bench = load_bench("accuracy_vs_mace")
    rep = _report(1, 220.0, 200.0)
    meta = {**rep["meta"], "command": "python bench/accuracy_vs_mace.py --seed 1", "train_frames": 10,
            "val_frames": 2, "held_frames": 3, "held_molecules": 1, "mace_charge_spin": True}  # fmt: skip
    for ev in rep["evaluation"].values():
        ev["vertical"]["ionisation_energy"].update(geometries=1, mean_predictor_mae_eV=0.5)
    results = {"TransIP": {"curve": []}, "MACE": {"curve": []}}
    bench.write_report(meta, rep["evaluation"], results, tmp_path / "fresh")
    fresh = (tmp_path / "fresh.md").read_text()
    assert "not trained by this command" not in fresh and "1 thread each, run side by side." in fresh
    meta["reused"] = {"MACE": "runs/old/mace"}
    bench.write_report(meta, rep["evaluation"], results, tmp_path / "mixed")
    text = (tmp_path / "mixed.md").read_text()
    assert "MACE's result was not trained by this command: it is read back from `runs/old/mace`" in text
    assert "TransIP's result was not" not in text and "side by side" not in text  # the pair did not share a run

    # A summary over seeds names the report whose side was read back, and only that one.
    first = _report(1, 220.0, 200.0)
    first["meta"]["reused"] = {"MACE": "runs/old/mace"}
    (tmp_path / "r1.json").write_text(json.dumps(first))
    (tmp_path / "r2.json").write_text(json.dumps(_report(2, 210.0, 200.0)))
    summary = bench.summarize_reports([str(tmp_path / "r1.json"), str(tmp_path / "r2.json")])
    assert "`r1.json` (seed 1; MACE read back from `runs/old/mace`), `r2.json` (seed 2)." in summary


def _job(tmp_path, transip_args: str = "--epochs 1 --force-weight 2.0") -> dict:
    return {
        "data": None, "train_frames": None, "val_frames": 5, "seed": 2, "budget_s": 60.0, "workdir": str(tmp_path),
        "transip_args": transip_args, "data_path": "set.npz", "mace_eval_every_s": 10.0, "mace_charge_spin": True,
        "force_loss": "smooth_l1", "force_loss_beta": 0.05,
    }  # fmt: skip


def test_a_finished_trainer_run_is_read_back_only_when_it_is_the_benchs_transip_command(tmp_path, load_bench):
    import json

    import pytest

    bench = load_bench("accuracy_vs_mace")
    job = _job(tmp_path)
    config = bench.command_config(bench.transip_command(job))
    assert config["force_weight"] == 2.0 and config["seed"] == 2 and config["time_budget_s"] == 60.0  # args win
    run = tmp_path / "elsewhere"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({**config, "output": str(run)}))  # another folder: allowed
    (run / "log.csv").write_text("epoch,time_s,val_force_mae_meV_per_A\n1,30.5,250.0\n")
    with pytest.raises(SystemExit, match="no model.pt"):
        bench.transip_from_run(job, str(run), config)
    (run / "model.pt").write_bytes(b"")
    got = bench.transip_from_run(job, str(run), config)
    assert got["reused_from"] == str(run) and got["model"] == str(run / "model.pt")
    assert got["curve"] == [{"time_s": 30.5, "val_force_mae_meV_per_A": 250.0}] and "--force-weight" in got["command"]
    default = _job(tmp_path, "--epochs 1")
    with pytest.raises(SystemExit, match=r"force_weight: run 2\.0, bench 0\.5"):  # the bench's default weight
        bench.transip_from_run(default, str(run), bench.command_config(bench.transip_command(default)))
    other_seed = {**job, "seed": 1}
    with pytest.raises(SystemExit, match="seed"):
        bench.transip_from_run(other_seed, str(run), bench.command_config(bench.transip_command(other_seed)))


def test_mace_is_read_back_from_a_report_only_of_the_same_data_seed_budget_and_settings(tmp_path, load_bench):
    import json

    import pytest

    bench = load_bench("accuracy_vs_mace")
    report = _report(2, 230.0, 219.0)
    report["meta"].update(data="/old/machine/set.npz", seed=2, train_frames=10, val_frames=2, reused={"MACE": "r/m"})
    report["curves"] = {"TransIP": [], "MACE": [{"time_s": 600.0, "val_force_mae_meV_per_A": 300.0}]}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(report))
    meta = {k: report["meta"][k] for k in bench.MACE_REPORT_KEYS}
    meta["data"] = "/new/clone/set.npz"  # the same file in another checkout
    result, evaluation = bench.mace_from_report(str(path), meta)
    assert evaluation == report["evaluation"]["MACE"] and result["curve"] == report["curves"]["MACE"]
    assert result["reused_from"] == f"{path} (whose MACE is the stored run in r/m)"
    for key, value in (("seed", 1), ("budget_s", 1200.0), ("mace_charge_spin", False), ("held_frames", 5),
                       ("data", "/x/other.npz"), ("force_loss", "mse")):  # fmt: skip
        with pytest.raises(SystemExit, match=f"old.json: {key} = "):
            bench.mace_from_report(str(path), {**meta, key: value})


def test_the_report_states_each_sides_loss_weights(tmp_path, load_bench):
    bench = load_bench("accuracy_vs_mace")
    rep = _report(1, 220.0, 200.0)
    meta = {**rep["meta"], "command": "python bench/accuracy_vs_mace.py", "train_frames": 10, "val_frames": 2,
            "held_frames": 3, "held_molecules": 1}  # fmt: skip
    for ev in rep["evaluation"].values():
        ev["vertical"]["ionisation_energy"].update(geometries=1, mean_predictor_mae_eV=0.5)
    results = {"TransIP": {"curve": []}, "MACE": {"curve": []}}
    bench.write_report(meta, rep["evaluation"], results, tmp_path / "default")
    text = (tmp_path / "default.md").read_text()
    assert "smooth L1 (beta 0.05 eV/Å); force weight MACE 5, TransIP 0.5; energy weight" in text
    bench.write_report({**meta, "transip_force_weight": 2.0}, rep["evaluation"], results, tmp_path / "set")
    assert "force weight MACE 5, TransIP 2;" in (tmp_path / "set.md").read_text()
