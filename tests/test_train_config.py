"""`transip-md train` configuration: YAML/TOML config files with CLI overrides, --skip-bad through the trainer,
and a validation set that does not depend on --max-frames (max_val_frames)."""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import iread, write

from transip_md.cli import build_parser
from transip_md.data import legacy_dataset_path
from transip_md.model import load_compiled
from transip_md.train.commands import build_train_config
from transip_md.train.config import TrainConfig
from transip_md.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"yaml": REPO / "examples" / "train" / "config.yaml", "toml": REPO / "examples" / "train" / "config.toml"}
N_FRAMES = 40


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> tuple[Path, list[Atoms]]:
    """The first N_FRAMES frames of the shipped data set (a few molecules, several charge/spin states)."""
    with gzip.open(legacy_dataset_path(), "rt") as fh:
        frames = list(iread(fh, index=f":{N_FRAMES}", format="extxyz"))
    path = tmp_path_factory.mktemp("data") / "small.extxyz"
    write(path, frames, format="extxyz")
    assert len({a.info["mol_id"] for a in frames}) >= 2  # so that the split has a validation molecule
    return path, frames


def run_cli(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "transip_md.cli", "train", *args, "--no-progress", "--no-plots", "--threads", "1"]
    return subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=300, env=env)


def test_yaml_and_toml_examples_are_the_same_recipe():
    parser = build_parser()
    cfgs = {k: build_train_config(parser.parse_args(["train", "--config", str(p)])) for k, p in CONFIGS.items()}
    assert cfgs["yaml"] == cfgs["toml"]
    cfg = cfgs["yaml"]
    # the recipe of docs/training.md (the shipped model), not the defaults
    assert cfg.model == {
        **TrainConfig().model,
        "d_model": 64,
        "n_layers": 2,
        "n_heads": 4,
        "n_rope_freqs": 2,
        "n_rbf": 64,
        "rbf_max": 10.0,
        "cutoff": 5.0,
        "elements": [1, 6, 7, 8, 9, 15, 16, 17, 35],
    }
    assert (cfg.epochs, cfg.max_atoms, cfg.lr, cfg.warmup_steps, cfg.dtype) == (100, 128, 3e-3, 50, "float32")
    assert (cfg.time_budget_s, cfg.val_fraction, cfg.max_val_frames) == (3000.0, 0.05, 500)
    assert (cfg.equivariance, cfg.threads, cfg.seed) == ("augment", 1, 0)
    assert cfg.data == ["transip_md/data/gfn2-organics-9el.npz"] and cfg.output == "runs/transip-small"
    assert isinstance(cfg.lr, float)


def test_finetune_recipe_continues_the_stage_one_checkpoint_on_both_shipped_files():
    from transip_md.train.checkpoint import load_checkpoint

    parser = build_parser()
    stage1 = build_train_config(parser.parse_args(["train", "--config", str(CONFIGS["yaml"])]))
    stage2 = build_train_config(parser.parse_args(["train", "--config", str(REPO / "examples/train/finetune.yaml")]))
    assert stage2.model == stage1.model and stage2.equivariance == stage1.equivariance
    assert stage2.data == ["transip_md/data/gfn2-organics-9el.npz", "transip_md/data/gfn2-bond-supplement.npz"]
    assert stage2.init_from == "checkpoints/transip-small/last.pt"
    stored = load_checkpoint(REPO / stage2.init_from)["model_config"]
    assert {k: stored[k] for k in stage2.model} == stage2.model  # init_from would accept it


@pytest.mark.parametrize("kind", ["yaml", "toml"])
def test_config_file_is_used_and_flags_override_it(kind, small_data, tmp_path):
    data, _ = small_data
    run = tmp_path / "run"
    args = ["--config", str(CONFIGS[kind]), "--data", str(data), "-o", str(run), "--max-steps", "2"]
    args += ["--lr", "0.001", "--heads", "2", "--set", "model.n_rbf=16"]  # overrides (top level, flag, --set)
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    written = json.loads((run / "config.json").read_text())
    default = TrainConfig()
    # from the file (values that differ from the defaults, so they cannot come from them)
    for key, value in {"epochs": 100, "max_atoms": 128, "lr": 3e-3, "time_budget_s": 3000.0}.items():
        assert getattr(default, key) != value
    assert default.model.get("rbf_max") != 10.0
    assert (written["epochs"], written["max_atoms"], written["time_budget_s"]) == (100, 128, 3000.0)
    assert written["threads"] == 1
    assert written["model"]["d_model"] == 64 and written["model"]["n_rope_freqs"] == 2
    assert written["model"]["rbf_max"] == 10.0
    # from the command line
    assert written["lr"] == 1e-3 and written["max_steps"] == 2
    assert written["model"]["n_heads"] == 2 and written["model"]["n_rbf"] == 16
    assert written["data"] == [str(data)] and written["output"] == str(run)
    # the model that was trained and exported is the configured one
    meta = load_compiled(run / "model.pt").metadata["config"]
    assert (meta["d_model"], meta["n_heads"], meta["n_rbf"], meta["n_rope_freqs"]) == (64, 2, 16, 2)
    assert meta["dtype"] == "float32"
    with open(run / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert int(rows[-1]["step"]) == 2


def test_skip_bad_through_the_trainer(small_data, tmp_path):
    _, frames = small_data
    bad_index = 3
    frames = [a.copy() for a in frames]
    for src, dst in zip(small_data[1], frames, strict=True):
        dst.calc = SinglePointCalculator(dst, energy=src.get_potential_energy(), forces=src.get_forces())
    no_forces = frames[bad_index]
    no_forces.calc = SinglePointCalculator(no_forces, energy=small_data[1][bad_index].get_potential_energy())
    path = tmp_path / "with_bad.extxyz"
    write(path, frames, format="extxyz")
    common = ["--data", str(path), "--max-steps", "1", "--d-model", "24", "--heads", "2", "--layers", "1"]
    common += ["--set", "model.n_rope_freqs=1", "--equivariance", "none"]

    proc = run_cli([*common, "-o", str(tmp_path / "strict")], tmp_path)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"{path}: frame {bad_index}: frame has no forces" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "strict" / "model.pt").exists()

    run = tmp_path / "skip"
    proc = run_cli([*common, "-o", str(run), "--skip-bad"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "skipped 1 bad frame(s) and 0 unreadable file(s)" in proc.stdout
    stats = json.loads((run / "data_stats.json").read_text())
    assert stats["read"]["skipped_frames"] == 1 and stats["read"]["frames"] == N_FRAMES - 1
    assert stats["read"]["problems"] == [f"{path}: frame {bad_index}: frame has no forces"]
    assert stats["train"]["frames"] + stats["val_frames"] == N_FRAMES - 1
    assert (run / "model.pt").is_file()


def _molecules(path: Path, n_mol: int = 24, per_mol: int = 5) -> Path:
    """Rattled CH4 frames (energies/forces arbitrary: only the frame selection is tested)."""
    rng = np.random.default_rng(0)
    base = np.array([[0, 0, 0], [1, 1, 1], [-1, -1, 1], [-1, 1, -1], [1, -1, -1]]) * 0.63
    frames = []
    for m in range(n_mol):
        for k in range(per_mol):
            a = Atoms("CH4", positions=base + rng.normal(scale=0.03, size=(5, 3)))
            a.info.update(charge=0, spin=1, mol_id=f"mol{m}", step=k)
            a.calc = SinglePointCalculator(a, energy=-24.0 + rng.normal(scale=0.1), forces=rng.normal(size=(5, 3)))
            frames.append(a)
    write(path, frames, format="extxyz")
    return path


def test_max_val_frames_fixes_the_validation_set(tmp_path):
    """Different --max-frames select different validation subsets unless max_val_frames is set; with it,
    every training size is evaluated on the same held-out frames (bench/equivariance.py --val-frames)."""
    data = _molecules(tmp_path / "ch4.extxyz")
    model = {"d_model": 24, "n_layers": 1, "n_heads": 2, "n_rope_freqs": 1, "cutoff": 5.0}

    def selection(**kw) -> tuple[list[int], list[int], Trainer]:
        cfg = TrainConfig(data=[str(data)], output=str(tmp_path / "run"), val_fraction=0.25, model=model, **kw)
        tr = Trainer(cfg)
        return tr.train_ids, tr.val_ids, tr

    _, held_out, tr = selection()  # no subsetting: every held-out frame
    assert len(held_out) == 30  # 6 of 24 molecules x 5 frames
    val_mols = {tr.frames[i].mol_id for i in held_out}
    # legacy behaviour: the validation subset shrinks with max_frames (max_frames // 4 frames)
    assert len(selection(max_frames=20)[1]) == 5 and len(selection(max_frames=80)[1]) == 20
    fixed = {}
    for size in (20, 40, 80):
        train_ids, val_ids, tr = selection(max_frames=size, max_val_frames=12)
        assert len(train_ids) == size
        assert {tr.frames[i].mol_id for i in train_ids}.isdisjoint(val_mols)
        fixed[size] = val_ids
    assert fixed[20] == fixed[40] == fixed[80]
    assert len(fixed[20]) == 12 and set(fixed[20]) <= set(held_out)
    assert len({tr.frames[i].mol_id for i in fixed[20]}) == 6  # an even spread covers every held-out molecule
    for size in (20, 80):
        assert selection(max_frames=size, max_val_frames=0)[1] == held_out
    with pytest.raises(ValueError, match="max_val_frames"):
        TrainConfig(max_val_frames=-1).check()


def test_resume_of_a_run_stored_before_align_existed_keeps_per_atom_alignment(tmp_path):
    """An old learned run's config.json has no ``align`` key: it resumes as align='atoms' (the only form then;
    'pooled' was the default in between); a stored ``align`` is kept, so a 'pooled' run does not switch to today's
    default 'atoms'; changing it on resume is refused."""
    from transip_md.train.config import ConfigError, resume_config

    assert TrainConfig().align == "atoms"  # today's default (docs/training.md, "Which default")
    parse = build_parser().parse_args
    for stored_align, expected in ((None, "atoms"), ("pooled", "pooled"), ("atoms", "atoms")):
        run = tmp_path / f"run_{stored_align}"
        run.mkdir()
        stored = TrainConfig(data=["d.extxyz"], equivariance="learned", epochs=2).to_dict()
        if stored_align is None:
            for key in ("align", "align_loss", "align_temperature", "align_stop_gradient"):
                del stored[key]
        else:
            stored["align"] = stored_align
        (run / "config.json").write_text(json.dumps(stored))
        assert resume_config(run)["align"] == expected
        cfg = build_train_config(parse(["train", "--resume", str(run), "--epochs", "3"]))
        assert (cfg.align, cfg.align_loss, cfg.epochs) == (expected, "mse", 3)
    with pytest.raises(ConfigError, match="align"):
        build_train_config(parse(["train", "--resume", str(tmp_path / "run_None"), "--set", "align=pooled"]))


def test_train_without_data_reads_the_shipped_set_and_the_bond_supplement():
    from transip_md.data import default_training_paths

    cfg = build_train_config(build_parser().parse_args(["train"]))
    assert cfg.data == [str(p) for p in default_training_paths()]
    assert all(p.exists() for p in default_training_paths())


def test_device_is_checked_before_any_data_is_read(tmp_path):
    """--device: a misspelt device and a GPU this torch cannot use are refused by name (no data read)."""
    import torch

    from transip_md.train.config import ConfigError

    with pytest.raises(ConfigError, match="device must be cpu, cuda or cuda:N, got 'gpu'"):
        TrainConfig(data=["missing.xyz"], device="gpu").check()
    args = build_parser().parse_args(["train", "--data", "missing.xyz", "--device", "cuda:7", "-o", str(tmp_path)])
    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs: cuda:7 is a real device")
    with pytest.raises(ConfigError, match="cuda:7"):
        build_train_config(args)


@pytest.mark.parametrize(
    "recipe_file, checkpoint",
    [
        ("finetune-vertical.yaml", "transip-small-ft2"),
        ("finetune-stage4.yaml", "transip-small-ft3"),
        ("finetune-stage5.yaml", "transip-small-ft4"),
        ("finetune-stage6.yaml", "transip-small-ft5"),
        ("finetune-stage7.yaml", "transip-small-ft6"),
        ("finetune-stage8-deep.yaml", "transip-deep-ft7"),
        ("finetune-stage8-control.yaml", "transip-small-ft7-control"),
        ("finetune-stage8-covalent-learned.yaml", "transip-small-ft7-covalent-learned"),
        ("v2-stage2.yaml", "transip-v2-stage2"),
        ("v2-stage3.yaml", "transip-v2-stage3"),
        ("v2-stage4.yaml", "transip-v2-stage4"),
        ("v2-stage5.yaml", "transip-v2-stage5"),
        ("v2-stage6.yaml", "transip-v2-stage6"),
        ("v2-stage7.yaml", "transip-v2-stage7"),
        ("v2-stage8.yaml", "transip-v2-stage8"),
        ("v2-stage9.yaml", "transip-v2-stage9"),
        ("v2-stage10.yaml", "transip-v2-stage10"),
        ("v2-stage11.yaml", "transip-v2-stage11"),
        ("v2-stage12.yaml", "transip-v2-stage12"),
        ("v2-stage13.yaml", "transip-v2-stage13"),
        ("v2-stage14.yaml", "transip-v2-stage14"),
        ("v2-stage15.yaml", "transip-v2-stage15"),
        ("v2-stage16.yaml", "transip-v2-stage16"),
        ("v2-stage17.yaml", "transip-v2-stage17"),
        ("v2-stage18.yaml", "transip-v2-stage18"),
        ("v2-stage19.yaml", "transip-v2-stage19"),
    ],
    ids=[
        "stage3",
        "stage4",
        "stage5",
        "stage6",
        "stage7",
        "stage8-deep-candidate",
        "stage8-control",
        "stage8-covalent-learned",
        "v2-stage2",
        "v2-stage3",
        "v2-stage4",
        "v2-stage5",
        "v2-stage6",
        "v2-stage7",
        "v2-stage8",
        "v2-stage9",
        "v2-stage10",
        "v2-stage11",
        "v2-stage12",
        "v2-stage13",
        "v2-stage14",
        "v2-stage15",
        "v2-stage16",
        "v2-stage17",
        "v2-stage18",
        "v2-stage19",
    ],  # fmt: skip
)
def test_fine_tuning_recipes_are_the_shipped_runs(recipe_file, checkpoint):
    """Each fine-tuning recipe in examples/train gives exactly the configuration its shipped run stored (all but
    where it wrote and whether it drew a progress bar)."""
    recipe = build_train_config(
        build_parser().parse_args(["train", "--config", str(REPO / "examples/train" / recipe_file)])
    ).to_dict()
    stored = json.loads((REPO / "checkpoints" / checkpoint / "config.json").read_text())
    # keys added after a run (direct_forces) take their defaults, which are what the run did
    stored = TrainConfig.from_dict(stored).to_dict()
    for key in ("output", "progress"):
        recipe.pop(key), stored.pop(key)
    assert recipe == stored


@pytest.mark.parametrize("recipe_file", sorted(p.name for p in (REPO / "examples" / "train").glob("*.yaml")))
def test_every_example_recipe_reads_and_its_start_checkpoint_fits(recipe_file):
    """Every recipe in examples/train reads and passes the config checks; a fine-tuning recipe's --init-from
    checkpoint is committed and has the recipe's model configuration (or the one --init-grow / --init-covalent
    accepts, or the same with a learned charge spread added), so the recipe can be run as written."""
    from transip_md.model import TransIPConfig
    from transip_md.train.checkpoint import load_checkpoint
    from transip_md.train.config import diff_keys

    cfg = build_train_config(
        build_parser().parse_args(["train", "--config", str(REPO / "examples/train" / recipe_file)])
    )
    cfg.check()
    if not cfg.init_from:
        return
    stored = load_checkpoint(REPO / cfg.init_from)["model_config"]
    wanted = TransIPConfig.from_dict(cfg.model).to_dict()
    allowed = (
        {"n_layers"} if cfg.init_grow else {"covalent_scaled_radial", "learned_radii"} if cfg.init_covalent else set()
    )
    if wanted["learned_charge_spread"] and not stored.get("learned_charge_spread", False):
        allowed = allowed | {"learned_charge_spread"}  # a spread is added to a checkpoint (it starts even)
    assert set(diff_keys(stored, wanted)) <= allowed
