"""Short training runs on the shipped data for each equivariance mode; symmetry; export; evaluate.

Bound (measured, see docs/training.md): predicting zero forces gives the validation force MAE
``zero_mae`` (the mean |F| of the held-out molecules, about 0.8 eV/Å for this 300-800 K xTB data).
A model that learned nothing stays at ~1.0 x zero_mae (we measured 1.00-1.01 with a too-coarse radial
basis). After 150 steps each mode reaches 0.6-0.75 x zero_mae; the test asks for < 0.85 x.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase import Atoms

from transip_md.data import legacy_dataset_path
from transip_md.train.checkpoint import export_checkpoint, load_checkpoint
from transip_md.train.config import TrainConfig
from transip_md.train.trainer import Trainer

STEPS = 150
BOUND = 0.85


def _cfg(mode, out):
    return TrainConfig(
        data=[str(legacy_dataset_path())],
        output=str(out),
        equivariance=mode,
        epochs=1000,
        max_steps=STEPS,
        max_frames=240,
        max_atoms=96,
        lr=3e-3,
        warmup_steps=20,
        threads=1,
        model={
            "d_model": 32,
            "n_layers": 2,
            "n_heads": 2,
            "cutoff": 5.0,
            "n_rope_freqs": 1,
            "n_rbf": 32,
            "rbf_max": 5.0,
        },
        symmetry_structures=4,
        symmetry_rotations=6,
        progress=False,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for mode in ("none", "augment", "learned"):
        tr = Trainer(_cfg(mode, tmp_path_factory.mktemp(mode)))
        zero = 1000 * float(np.mean(np.concatenate([np.abs(tr.frames[i].forces).ravel() for i in tr.val_ids])))
        result = tr.fit()
        out[mode] = (tr, result, zero)
    return out


@pytest.mark.parametrize("mode", ["none", "augment", "learned"])
def test_training_lowers_validation_force_mae(runs, mode):
    tr, result, zero = runs[mode]
    last = result["history"][-1]
    assert last["step"] == STEPS
    # validation molecules are not in the training set
    assert {tr.frames[i].mol_id for i in tr.val_ids}.isdisjoint({tr.frames[i].mol_id for i in tr.train_ids})
    assert last["val_force_mae_meV_per_A"] < BOUND * zero, (last["val_force_mae_meV_per_A"], zero)


def test_learned_symmetry_error_below_none(runs):
    learned = runs["learned"][1]["history"][-1]
    none = runs["none"][1]["history"][-1]
    assert learned["val_sym_force_rms_meV_per_A"] < none["val_sym_force_rms_meV_per_A"]
    assert learned["val_sym_energy_std_meV"] < none["val_sym_energy_std_meV"]


def test_outputs_checkpoint_export_and_evaluate(runs, tmp_path):
    tr, result, _ = runs["learned"]
    out = tr.out
    for name in ("last.pt", "best.pt", "model.pt", "log.csv", "learning_curves.png", "parity.png"):
        assert (out / name).stat().st_size > 0, name
    ck = torch.load(out / "last.pt", weights_only=True)  # plain dict, no pickled objects
    assert ck["step"] == STEPS and "optimizer" in ck and "rng" in ck and ck["transform_state"]
    ck = load_checkpoint(out / "best.pt")
    path = export_checkpoint(out / "best.pt", tmp_path / "m.pt")
    from transip_md.model import load_compiled

    model = load_compiled(path)
    assert model.cutoff == 5.0 and model.metadata["provenance"]["data_hash"] == tr.data_hash
    assert model.metadata["provenance"]["train_config"]["equivariance"] == "learned"
    data = tmp_path / "val.extxyz"
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    from transip_md.train.data import frame_to_atoms

    atoms = []
    for i in tr.val_ids[:12]:
        a = frame_to_atoms(tr.frames[i])
        a.calc = SinglePointCalculator(a, energy=tr.frames[i].energy, forces=tr.frames[i].forces)
        atoms.append(a)
    write(data, atoms, format="extxyz")
    proc = subprocess.run(
        [sys.executable, "-m", "transip_md.cli", "evaluate", str(out / "model.pt"), str(data), "--json",
         "--symmetry-structures", "2"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    res = json.loads(proc.stdout)
    assert res["frames"] == 12 and res["per_state"] and res["symmetry"]["sym_force_rms_meV_per_A"] >= 0
    # the model file's validation error matches the trainer's numbers for the same frames (best = EMA weights)
    assert res["overall"]["force_mae_meV_per_A"] < runs["learned"][2] * BOUND * 1.3


def test_init_from_starts_at_the_checkpoint_ema_weights(runs, tmp_path):
    """--init-from: every weight and buffer of the new run starts at the checkpoint's EMA model; the
    optimizer and counters start afresh; another model config is refused by name."""
    from transip_md.train.checkpoint import CheckpointError, model_from_checkpoint

    tr, result, _ = runs["augment"]
    last = tr.out / "last.pt"
    expected = model_from_checkpoint(load_checkpoint(last)).state_dict()
    cfg = _cfg("augment", tmp_path / "fine")
    cfg.init_from = str(last)
    fine = Trainer(cfg)
    got = fine.model.state_dict()
    assert set(got) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=name)
    assert fine.step == 0 and fine.epoch == 0
    # the raw (non-EMA) weights differ from the EMA ones: the test would notice the wrong set
    raw = load_checkpoint(last)["model_state"]
    assert any(not torch.equal(raw[n], expected[n]) for n in expected)
    other = _cfg("augment", tmp_path / "other")
    other.init_from = str(last)
    other.model = {**other.model, "d_model": 48}
    with pytest.raises(CheckpointError, match="d_model"):
        Trainer(other)


def test_init_grow_starts_a_deeper_model_at_the_checkpoint_energies(runs, tmp_path):
    """--init-grow: a 3-block model grown from the 2-block checkpoint gives its energies and forces (the new block
    is an identity map), the old blocks keep their weights, the run then trains the new block; a grown
    checkpoint with other changes, or without more blocks, is refused by name, and --init-grow needs --init-from."""
    from transip_md.train.checkpoint import CheckpointError, model_from_checkpoint
    from transip_md.train.config import ConfigError
    from transip_md.train.data import collate
    from transip_md.train.losses import evaluate_batch

    tr, _, _ = runs["augment"]
    last = tr.out / "last.pt"
    old = model_from_checkpoint(load_checkpoint(last))
    cfg = _cfg("augment", tmp_path / "grown")
    cfg.init_from, cfg.init_grow = str(last), True
    cfg.model = {**cfg.model, "n_layers": 3}
    cfg.max_steps = 5
    grown = Trainer(cfg)
    assert len(grown.model.blocks) == 3
    for name, value in old.state_dict().items():
        torch.testing.assert_close(grown.model.state_dict()[name], value, rtol=0, atol=0, msg=name)
    ids = tr.val_ids[:4]
    batch = collate(ids, tr.frames, tr.topologies)
    want = evaluate_batch(old, batch, training=False)
    got = evaluate_batch(grown.model, batch, training=False)
    # float32 round-off only (the old last block now runs for every token, not just the centre): 0.1 meV, meV/Å
    torch.testing.assert_close(got.energy, want.energy, rtol=0, atol=1e-4)
    torch.testing.assert_close(got.forces, want.forces, rtol=0, atol=1e-4)
    new_block = [p.detach().clone() for p in grown.model.blocks[2].parameters()]
    grown.fit()
    assert any(not torch.equal(a, b) for a, b in zip(new_block, grown.model.blocks[2].parameters(), strict=True))
    assert torch.count_nonzero(grown.model.blocks[2].out.weight) > 0
    same = _cfg("augment", tmp_path / "same")
    same.init_from, same.init_grow = str(last), True
    with pytest.raises(CheckpointError, match="must exceed the checkpoint's 2"):
        Trainer(same)
    wider = _cfg("augment", tmp_path / "wider")
    wider.init_from, wider.init_grow = str(last), True
    wider.model = {**wider.model, "n_layers": 3, "n_rbf": 16}
    with pytest.raises(CheckpointError, match="n_rbf: 32 vs 16"):
        Trainer(wider)
    plain = _cfg("augment", tmp_path / "plain")
    plain.init_from = str(last)
    plain.model = {**plain.model, "n_layers": 3}
    with pytest.raises(CheckpointError, match="add --init-grow"):
        Trainer(plain)
    with pytest.raises(ConfigError, match="needs init_from"):
        TrainConfig(init_grow=True).check()


def _methane() -> Atoms:
    """CH4 at a 1.09 Å C-H bond (its C-H pairs read 1.42 r when covalent-scaled)."""
    d = 0.63
    return Atoms("CH4", positions=[[0, 0, 0], [d, d, d], [-d, -d, d], [-d, d, -d], [d, -d, -d]])


def test_init_covalent_starts_a_covalent_scaled_model_from_a_plain_checkpoint(runs, tmp_path):
    """--init-covalent: every weight of the plain checkpoint is copied, both radial splines are extended to the
    covalent-scaled range with the checkpoint's values (so a carbon-only structure gets the checkpoint's energy and
    forces, a C-H one does not), the run then trains; anything but plain -> covalent-scaled is refused by name."""
    from transip_md.model import predict
    from transip_md.train.checkpoint import CheckpointError, model_from_checkpoint
    from transip_md.train.config import ConfigError

    tr, _, _ = runs["augment"]
    last = tr.out / "last.pt"
    old = model_from_checkpoint(load_checkpoint(last)).eval()
    cfg = _cfg("augment", tmp_path / "covalent")
    cfg.init_from, cfg.init_covalent = str(last), True
    cfg.model = {**cfg.model, "covalent_scaled_radial": True}
    cfg.max_steps = 5
    started = Trainer(cfg)
    model = started.model.eval()
    assert model.covalent_scaled and model.radial_bias.n_knots > old.radial_bias.n_knots
    state = model.state_dict()
    for name, value in old.state_dict().items():
        if not name.endswith("radial_bias.coefficients") and not name.endswith("token_radial.coefficients"):
            torch.testing.assert_close(state[name], value, rtol=0, atol=0, msg=name)
    x = torch.linspace(0.0, 3.0 * cfg.model["rbf_max"], 2001)
    with torch.no_grad():
        torch.testing.assert_close(model.radial_bias(x), old.radial_bias(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(model.token_radial(x), old.token_radial(x), rtol=0, atol=1e-6)
    carbon = Atoms("C4", positions=[[0, 0, 0], [1.5, 0, 0], [2.1, 1.3, 0], [3.4, 1.4, 0.8]])
    a, b = predict(old, carbon.numbers, carbon.positions), predict(model, carbon.numbers, carbon.positions)
    assert b.energy == pytest.approx(a.energy, abs=1e-4)
    np.testing.assert_allclose(b.forces, a.forces, atol=1e-4)
    methane = _methane()
    a, b = predict(old, methane.numbers, methane.positions), predict(model, methane.numbers, methane.positions)
    assert abs(b.energy - a.energy) > 1e-3  # C-H reads 1.42 r: the option acts where radii differ
    before = model.radial_bias.coefficients.detach().clone()
    started.fit()
    assert not torch.equal(before, started.model.radial_bias.coefficients)

    def refused(match, **model_keys):
        bad = _cfg("augment", tmp_path / f"bad{len(model_keys)}")
        bad.init_from, bad.init_covalent = str(last), True
        bad.model = {**bad.model, **model_keys}
        with pytest.raises(CheckpointError, match=match):
            Trainer(bad)

    refused("needs a plain-radial checkpoint and model.covalent_scaled_radial=true")
    refused("n_rbf: 32 vs 16", covalent_scaled_radial=True, n_rbf=16)
    plain = _cfg("augment", tmp_path / "plain")
    plain.init_from = str(last)
    plain.model = {**plain.model, "covalent_scaled_radial": True}
    with pytest.raises(CheckpointError, match="add --init-covalent"):
        Trainer(plain)
    plain.model = {**plain.model, "learned_radii": True}
    with pytest.raises(CheckpointError, match="add --init-covalent"):
        Trainer(plain)
    with pytest.raises(ConfigError, match="needs init_from"):
        TrainConfig(init_covalent=True).check()
    with pytest.raises(ConfigError, match="cannot be combined"):
        TrainConfig(init_from=str(last), init_covalent=True, init_grow=True).check()


def test_init_covalent_with_learned_radii_starts_exactly_at_the_checkpoint(runs, tmp_path):
    """--init-covalent with model.learned_radii: every radius starts at 0.76 Å, so every pair reads r and the
    started model gives the checkpoint's energies and forces for any molecule; training then moves the radii."""
    from transip_md.model import predict
    from transip_md.train.checkpoint import model_from_checkpoint

    tr, _, _ = runs["augment"]
    last = tr.out / "last.pt"
    old = model_from_checkpoint(load_checkpoint(last)).eval()
    cfg = _cfg("augment", tmp_path / "learned")
    cfg.init_from, cfg.init_covalent = str(last), True
    cfg.model = {**cfg.model, "covalent_scaled_radial": True, "learned_radii": True}
    cfg.max_steps = 5
    started = Trainer(cfg)
    model = started.model.eval()
    torch.testing.assert_close(torch.exp(model.log_radii.detach()), torch.full((4,), 0.76), rtol=1e-6, atol=0)
    methane = _methane()
    a, b = predict(old, methane.numbers, methane.positions), predict(model, methane.numbers, methane.positions)
    assert b.energy == pytest.approx(a.energy, abs=1e-4)
    np.testing.assert_allclose(b.forces, a.forces, atol=1e-4)
    before = model.log_radii.detach().clone()
    started.fit()
    assert not torch.equal(before, started.model.log_radii.detach())


def test_init_from_with_a_new_learned_spread_starts_exactly_at_the_checkpoint(runs, tmp_path):
    """--init-from a plain checkpoint into a model with learned_charge_spread: the spread starts even (zero last
    layer), so the charged and open-shell energies and forces are the checkpoint's; training then moves it."""
    from transip_md.model import predict
    from transip_md.train.checkpoint import model_from_checkpoint

    tr, _, _ = runs["augment"]
    last = tr.out / "last.pt"
    old = model_from_checkpoint(load_checkpoint(last)).eval()
    cfg = _cfg("augment", tmp_path / "spread")
    cfg.init_from = str(last)
    cfg.model = {**cfg.model, "learned_charge_spread": True}
    cfg.max_steps = 5
    started = Trainer(cfg)
    model = started.model.eval()
    methane = _methane()
    methane.positions[0] += 0.1  # unequal C-H bonds: an uneven spread would change the numbers
    for q, m in [(0, 1), (1, 2), (0, 3)]:
        a = predict(old, methane.numbers, methane.positions, charge=q, multiplicity=m)
        b = predict(model, methane.numbers, methane.positions, charge=q, multiplicity=m)
        assert b.energy == pytest.approx(a.energy, abs=1e-5)
        np.testing.assert_allclose(b.forces, a.forces, atol=1e-5)
    before = model.spread.out[2].weight.detach().clone()
    started.fit()
    assert not torch.equal(before, started.model.spread.out[2].weight.detach())


def test_a_checkpoint_written_before_a_model_key_existed_reads_with_its_default(runs, tmp_path):
    """Checkpoints of older versions lack model keys added since (e.g. covalent_scaled_radial); they read with
    the key's default, the behaviour they were trained with, so --init-from a plain model of the same
    configuration still works."""
    tr, _, _ = runs["augment"]
    ck = torch.load(tr.out / "last.pt", map_location="cpu", weights_only=True)
    del ck["model_config"]["covalent_scaled_radial"]
    older = tmp_path / "older.pt"
    torch.save(ck, older)
    assert load_checkpoint(older)["model_config"]["covalent_scaled_radial"] is False
    cfg = _cfg("augment", tmp_path / "fine")
    cfg.init_from = str(older)
    Trainer(cfg)  # same model config once completed: accepted


def test_a_failed_export_names_the_kept_checkpoint_and_the_command(tmp_path, monkeypatch):
    """Compiling model.pt reads the package's source files at export time (TorchScript); if that fails (e.g. the
    package was edited or upgraded during a long run), the error says the checkpoints are kept and how to export."""
    import transip_md.train.checkpoint as ckpt_mod
    from transip_md.train.checkpoint import CheckpointError

    cfg = _cfg("augment", tmp_path / "run")
    cfg.max_steps, cfg.max_frames, cfg.symmetry_structures, cfg.plots = 2, 16, 0, False

    def broken_export(*args, **kwargs):
        raise RuntimeError("'Tensor' object has no attribute or method '__init__'")

    monkeypatch.setattr(ckpt_mod, "export_loaded", broken_export)
    with pytest.raises(CheckpointError, match=r"checkpoints are kept.*transip-md export --checkpoint .*best\.pt"):
        Trainer(cfg).fit()
    assert (tmp_path / "run" / "best.pt").exists() and not (tmp_path / "run" / "model.pt").exists()
    monkeypatch.undo()
    export_checkpoint(str(tmp_path / "run" / "best.pt"), str(tmp_path / "run" / "model.pt"))  # the advised remedy
    assert (tmp_path / "run" / "model.pt").exists()
