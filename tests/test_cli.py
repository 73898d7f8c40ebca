"""The command line itself (issue 14 #8, #9, #14, #16; issue 16 #3): one-line user errors with exit code 2 and
tracebacks behind --debug, --version, --help with defaults, export's source and output rules, the
--resume configuration, and the layer rule for the export sources."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from conftest import make_model

from transip_md import __version__
from transip_md.cli import build_parser, main
from transip_md.model import export, load_compiled
from transip_md.train.checkpoint import CheckpointError, load_checkpoint
from transip_md.train.commands import build_train_config
from transip_md.train.config import ConfigError, TrainConfig
from transip_md.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]


def _user_error(capsys, argv: list[str], *needles: str) -> str:
    """Run ``main(argv)``: it must exit with code 2 after one stderr line naming the command and ``needles``."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"transip-md {argv[0]}: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in err and "weights_only=False" not in err
    return lines[0]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return export(make_model(None), tmp_path_factory.mktemp("m") / "global.pt")


def _labelled(path: Path, symbols: str) -> Path:
    atoms = Atoms(symbols)
    atoms.positions = np.random.default_rng(0).uniform(0, 3, (len(atoms), 3))
    atoms.info.update(charge=0, spin=1 + sum(atoms.numbers) % 2)
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=np.zeros((len(atoms), 3)))
    write(path, atoms, format="extxyz")
    return path


# ---------------------------------------------------------------------------------------------- user errors
def test_evaluate_user_errors_are_one_line(tmp_path, capsys, model_path):
    data = _labelled(tmp_path / "ok.extxyz", "CH4")
    _user_error(capsys, ["evaluate", str(tmp_path / "missing.pt"), str(data)], "missing.pt", "not found")
    _user_error(capsys, ["evaluate", str(model_path), str(tmp_path / "none.extxyz")], "none.extxyz")
    silicon = _labelled(tmp_path / "si.extxyz", "SiH4")
    _user_error(capsys, ["evaluate", str(model_path), str(silicon)], "si.extxyz", "Si")


def test_md_user_errors_are_one_line(tmp_path, capsys, model_path):
    _user_error(capsys, ["md", str(tmp_path / "nothing.xyz"), "--model", str(model_path)], "nothing.xyz")
    # distinct positions: the file's 0.1 Å overlap rule would otherwise answer first
    si_h4 = [[0, 0, 0], [1.5, 0, 0], [0, 1.5, 0], [0, 0, 1.5], [-1.5, 0, 0]]
    write(tmp_path / "si.xyz", Atoms("SiH4", positions=si_h4))
    args = ["md", str(tmp_path / "si.xyz"), "--model", str(model_path), "--steps", "1", "--platform", "Reference"]
    _user_error(capsys, [*args, "--quiet"], "Si")


def test_checkpoint_errors_name_the_file(tmp_path, capsys):
    """Truncated, empty, foreign-pickle and TorchScript files: '<path>: not a transip-md checkpoint (...)',
    never torch's advice to load with weights_only=False."""
    good = tmp_path / "good.pt"
    torch.save({"format": "transip-md-checkpoint", "version": 1, "x": torch.zeros(1000)}, good)
    data = good.read_bytes()
    cases = {"truncated.pt": data[: len(data) // 2], "empty.pt": b""}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    torch.save({"a": __import__("fractions").Fraction(1, 3)}, tmp_path / "foreign.pt")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "script.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    for name in ("truncated.pt", "empty.pt", "foreign.pt", "script.pt", "list.pt"):
        path = tmp_path / name
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        message = str(info.value)
        assert message.startswith(f"{path}: not a transip-md checkpoint ("), message
        assert "weights_only" not in message and "\n" not in message
        _user_error(capsys, ["export", "--checkpoint", str(path), str(tmp_path / "out.pt")], str(path))
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")


def test_train_user_errors_are_one_line(tmp_path, capsys):
    data = _labelled(tmp_path / "d.extxyz", "CH4")
    _user_error(capsys, ["train", "--data", str(tmp_path / "nope.extxyz"), "-o", str(tmp_path / "r")], "nope.extxyz")
    _user_error(capsys, ["train", "--data", str(data), "--epochs", "0"], "epochs must be >= 1")
    _user_error(capsys, ["train", "--config", str(tmp_path / "absent.yaml")], "absent.yaml")
    _user_error(capsys, ["train", "--data", str(data), "--set", "nonsense"], "KEY=VALUE")


def test_debug_shows_the_traceback_and_bugs_keep_theirs(tmp_path, capsys, monkeypatch):
    missing = str(tmp_path / "missing.pt")
    for argv in (["--debug", "evaluate", missing, "x"], ["evaluate", missing, "x", "--debug"]):
        with pytest.raises(Exception, match="model file not found"):
            main(argv)
    # an exception that is not a user error is a bug: it propagates (traceback, exit code 1)
    from transip_md.train import evaluate

    def broken(*args, **kwargs):
        raise RuntimeError("internal")

    monkeypatch.setattr(evaluate, "evaluate_model", broken)
    with pytest.raises(RuntimeError, match="internal"):
        main(["evaluate", missing, "x"])


def test_process_exit_code_and_no_traceback(tmp_path):
    cmd = [sys.executable, "-m", "transip_md.cli", "export", "--checkpoint", str(tmp_path / "gone.pt"), "o.pt"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"transip-md export: error: {tmp_path / 'gone.pt'}: checkpoint not found"


# ---------------------------------------------------------------------------------------------- model config rule
def test_model_config_is_checked_before_the_data_is_read(tmp_path):
    """--d-model 16 with 4 heads: the rule, at once, even though the data file does not exist."""
    cfg = TrainConfig(data=[str(tmp_path / "never-read.extxyz")], model={"d_model": 16, "n_heads": 4})
    with pytest.raises(ConfigError, match=r"head dimension 4 .*rule: d_model must be divisible by n_heads"):
        Trainer(cfg)
    with pytest.raises(ConfigError, match="divisible"):
        TrainConfig(data=["x"], model={"d_model": 30, "n_heads": 4}).check()


def test_help_states_the_rule_and_the_defaults(capsys):
    for argv, needles in (
        (["train", "--help"], ["6 x n_rope_freqs", "--d-model", "--layers", "--heads", "(default: 0.002)"]),
        (["export", "--help"], ["--d-model", "(default: 64)", "Transformer blocks", "attention heads"]),
        (["md", "--help"], ["(default: 300.0)", "(default: langevin)"]),
    ):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0
        out = " ".join(capsys.readouterr().out.split())
        for needle in needles:
            assert needle in out, (argv, needle)


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"transip-md {__version__}"


# ---------------------------------------------------------------------------------------------- export
def test_export_sources_and_outputs(tmp_path, capsys):
    small = ["--random", "--d-model", "24", "--heads", "2", "--layers", "1", "--elements", "H,O"]
    _user_error(capsys, ["export", str(tmp_path / "a.pt"), "-o", str(tmp_path / "b.pt"), *small], "a.pt", "b.pt")
    _user_error(capsys, ["export", str(tmp_path / "a.pt"), *small, "--checkpoint", "x.pt"], "--random", "--checkpoint")
    _user_error(capsys, ["export", str(tmp_path / "a.pt")], "choose a source")
    _user_error(capsys, ["export", str(tmp_path / "a.pt"), "--checkpoint", "x.pt", "--d-model", "8"], "--d-model")
    _user_error(capsys, ["export", str(tmp_path / "a.pt"), "--random", "--d-model", "16"], "head dimension")
    assert not (tmp_path / "a.pt").exists() and not (tmp_path / "b.pt").exists()
    # the same file twice is fine
    assert main(["export", str(tmp_path / "a.pt"), "-o", str(tmp_path / "a.pt"), *small]) == 0
    assert json.loads(capsys.readouterr().out)["wrote"] == str(tmp_path / "a.pt")
    assert load_compiled(tmp_path / "a.pt").metadata["config"]["d_model"] == 24


def test_export_lammps_mliap_through_the_cli(tmp_path, capsys):
    local = export(make_model(4.0), tmp_path / "local.pt")
    out = tmp_path / "mliap.pt"
    assert main(["export", "--lammps-mliap", str(local), "-o", str(out), "--charge", "1", "--spin", "2"]) == 0
    assert "pair_style mliap unified" in capsys.readouterr().out
    from transip_md.lammps.mliap import load_mliap

    obj = load_mliap(out)
    assert (obj.charge, obj.multiplicity) == (1, 2)
    _user_error(capsys, ["export", "--random", "--charge", "1", str(tmp_path / "r.pt")], "--charge", "--lammps-mliap")


def test_model_layer_imports_no_higher_layer():
    """transip_md/model/ must not import the train, lammps, openmm or ase layers (DESIGN.md layers)."""
    higher = ("train", "lammps", "openmm", "ase", "cli", "demo")
    for path in sorted((REPO / "transip_md" / "model").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                name = parts[1] if node.level == 0 and parts[0] == "transip_md" and len(parts) > 1 else None
                name = parts[0] if node.level == 2 else name
                assert name not in higher, f"{path.name} imports {'.' * node.level}{node.module}"


def test_cli_lists_real_modules_only():
    text = (REPO / "transip_md" / "cli.py").read_text()
    assert "globals().get" not in (REPO / "transip_md" / "train" / "commands.py").read_text()
    assert "importlib" not in text and "ModuleNotFoundError" not in text
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {"export", "train", "evaluate", "label", "md", "lammps-plugin-path", "demo"} <= set(sub.choices)


# ---------------------------------------------------------------------------------------------- --resume
def _stored_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    cfg = TrainConfig(data=["d.extxyz"], output="elsewhere/run", epochs=3, seed=7, model={**TrainConfig().model})
    cfg.model.update(d_model=32, n_heads=2, n_rope_freqs=1)
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    return run


def test_resume_alone_reuses_the_run_config(tmp_path):
    run = _stored_run(tmp_path)
    parse = build_parser().parse_args
    cfg = build_train_config(parse(["train", "--resume", str(run)]))
    stored = json.loads((run / "config.json").read_text())
    assert cfg.to_dict() == {**stored, "resume": str(run), "output": str(run)}
    cfg = build_train_config(parse(["train", "--resume", str(run), "--epochs", "9", "--lr", "1e-4", "--heads", "2"]))
    assert (cfg.epochs, cfg.lr, cfg.model["n_heads"], cfg.seed) == (9, 1e-4, 2, 7)
    for flags, named in (
        (["--heads", "4"], "--heads 4"),
        (["--set", "model.n_rbf=8"], "--set model.n_rbf"),
        (["--seed", "1"], "--seed 1"),
        (["--equivariance", "learned"], "--equivariance"),
    ):
        with pytest.raises(ConfigError, match=named):
            build_train_config(parse(["train", "--resume", str(run), *flags]))
    with pytest.raises(ConfigError, match="not a training run"):
        build_train_config(parse(["train", "--resume", str(tmp_path)]))
