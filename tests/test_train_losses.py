"""The learned-equivariance objective: pooled and per-atom alignment, two views, gradients, sharding, options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ETHANOL_A, ETHANOL_Z, make_model

from transip_md.train.config import ConfigError, TrainConfig
from transip_md.train.data import Frame, TopologyCache, collate
from transip_md.train.losses import (
    ForceLoss,
    PooledAlignment,
    RotationTransform,
    alignment_from_config,
    build_alignment,
    draw_rotations,
    evaluate_batch,
    normalised,
    per_atom_energies,
    pooled,
    random_rotations,
    training_loss,
    views,
)

torch.set_num_threads(1)

WATER_Z = [8, 1, 1]
WATER_A = np.array([[0.0, 0.0, 0.1], [0.0, 0.76, -0.48], [0.0, -0.76, -0.48]])


def _frames() -> list[Frame]:
    rng = np.random.default_rng(0)
    out = []
    for k, (z, a, q, m) in enumerate(
        [(ETHANOL_Z, ETHANOL_A, 0, 1), (WATER_Z, WATER_A, 1, 2), (ETHANOL_Z, ETHANOL_A, 0, 3), (WATER_Z, WATER_A, 0, 1)]
    ):
        pos = np.asarray(a) + 0.05 * rng.standard_normal((len(z), 3))
        forces = rng.standard_normal((len(z), 3))
        energy = -100.0 * len(z) + rng.standard_normal()
        out.append(Frame(np.array(z), pos, float(energy), forces, charge=q, spin=m, mol_id=str(k)))
    return out


def _batch(cutoff, ids=(0, 1, 2, 3)):
    frames = _frames()
    return collate(list(ids), frames, TopologyCache(frames, cutoff))


@pytest.mark.parametrize("cutoff", [None, 4.0])
def test_feature_path_gives_forwards_energies(cutoff):
    """The learned mode's one-pass energies (features -> head + priors) equal model(...) exactly."""
    model = make_model(cutoff, scale=2.0)
    batch = _batch(cutoff)
    vec = batch.edge_vectors()
    ref = model(batch.species, batch.edge_index, vec, batch.charge, batch.spin, batch.batch)
    energies, features = per_atom_energies(model, batch, vec)
    assert features.shape == (batch.species.shape[0], model.config.d_model)
    torch.testing.assert_close(energies, ref, rtol=0, atol=1e-12)
    rot = random_rotations(batch.n_structures, torch.Generator().manual_seed(1))
    a = evaluate_batch(model, batch, rot, training=False, want_features=True)
    b = evaluate_batch(model, batch, rot, training=False)
    torch.testing.assert_close(a.energy, b.energy, rtol=0, atol=1e-10)
    torch.testing.assert_close(a.forces, b.forces, rtol=0, atol=1e-10)


def test_draw_rotations_shapes_and_views():
    gen = torch.Generator().manual_seed(0)
    two = draw_rotations(5, gen, "learned")
    assert two.shape == (5, 2, 3, 3)
    one = draw_rotations(5, torch.Generator().manual_seed(0), "augment")
    assert one.shape == (5, 3, 3)
    for r in two.reshape(-1, 3, 3):
        torch.testing.assert_close(r @ r.T, torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-12)
        assert abs(float(torch.linalg.det(r)) - 1.0) < 1e-12
    # the relative rotation maps view A's edge vectors onto view B's
    batch = _batch(4.0)
    rot_a, rot_b, rel = views(draw_rotations(batch.n_structures, gen, "learned"))
    va = batch.edge_vectors(rot_a)
    vb = batch.edge_vectors(rot_b)
    rel_e = rel[batch.batch[batch.edge_index[0]]]
    torch.testing.assert_close(torch.einsum("eij,ej->ei", rel_e, va), vb, rtol=0, atol=1e-12)
    # (B, 3, 3): views x and R x
    r = random_rotations(batch.n_structures, gen)
    none_a, same_b, same_rel = views(r)
    assert none_a is None and torch.equal(same_b, r) and torch.equal(same_rel, r)


def test_pooled_embedding_is_the_atom_mean_and_normalised():
    batch = _batch(None)
    feats = torch.randn(batch.species.shape[0], 8, dtype=torch.float64)
    z = pooled(feats, batch)
    first = int(batch.n_atoms[0])
    torch.testing.assert_close(z[0], feats[:first].mean(0))
    z = 10.0 * z  # |z| well above the layer norm's eps
    zn = normalised(3.0 * z)
    torch.testing.assert_close(zn, normalised(z), rtol=0, atol=1e-6)  # a common scale drops out
    torch.testing.assert_close(zn.mean(-1), torch.zeros(batch.n_structures, dtype=torch.float64), rtol=0, atol=1e-9)


@pytest.mark.parametrize("cutoff", [None, 4.0])
@pytest.mark.parametrize("align", ["pooled", "atoms"])
def test_alignment_vanishes_for_an_invariant_encoder(cutoff, align):
    """Rotary frequencies zero -> features see distances only -> both views agree and T = identity at init."""
    batch = _batch(cutoff)
    rot = draw_rotations(batch.n_structures, torch.Generator().manual_seed(2), "learned")
    net = build_alignment(align, 32, dtype=torch.float64)
    model = make_model(cutoff)
    model.rope.proj.zero_()
    _, parts = training_loss(model, net, batch, "learned", rot, 1.0, 1.0, 1.0)
    assert parts["loss_align"] < 1e-12
    _, parts = training_loss(make_model(cutoff), net, batch, "learned", rot, 1.0, 1.0, 1.0)
    assert parts["loss_align"] > 1e-4  # a random non-invariant encoder is penalised


@pytest.mark.parametrize(
    "align,loss,stop",
    [("pooled", "mse", False), ("pooled", "infonce", False), ("pooled", "mse", True), ("atoms", "mse", False)],
)
def test_every_form_trains(align, loss, stop):
    """Loss finite; the alignment net and the encoder get gradients (zero-initialised last layer included)."""
    batch = _batch(4.0)
    model = make_model(4.0)
    net = build_alignment(align, 32, loss=loss, stop_gradient=stop, dtype=torch.float64)
    rot = draw_rotations(batch.n_structures, torch.Generator().manual_seed(3), "learned")
    total, parts = training_loss(model, net, batch, "learned", rot, 1.0, 1.0, 1.0)
    total.backward()
    assert np.isfinite(float(total.detach())) and {"loss_energy", "loss_force", "loss_align"} <= set(parts)
    assert float(net.net[-1].weight.grad.abs().sum()) > 0
    assert float(model.embed.weight.grad.abs().sum()) > 0


def test_stop_gradient_detaches_the_target_view():
    batch = _batch(None)
    feat_a = torch.randn(batch.species.shape[0], 16, dtype=torch.float64, requires_grad=True)
    feat_b = torch.randn(batch.species.shape[0], 16, dtype=torch.float64, requires_grad=True)
    rel = random_rotations(batch.n_structures, torch.Generator().manual_seed(4))
    for stop in (False, True):
        feat_a.grad = feat_b.grad = None
        net = PooledAlignment(16, stop_gradient=stop).double()
        net.loss(feat_a, feat_b, rel, batch, batch.n_structures, 0).backward()
        assert feat_a.grad is not None and float(feat_a.grad.abs().sum()) > 0
        assert (feat_b.grad is None) == stop


def test_infonce_matches_its_formula():
    batch = _batch(None)
    torch.manual_seed(0)
    net = PooledAlignment(16, loss="infonce", temperature=0.5).double()
    torch.nn.init.normal_(net.net[-1].weight, std=0.1)
    feat_a = torch.randn(batch.species.shape[0], 16, dtype=torch.float64)
    feat_b = torch.randn(batch.species.shape[0], 16, dtype=torch.float64)
    rel = random_rotations(batch.n_structures, torch.Generator().manual_seed(5))
    got = net.loss(feat_a, feat_b, rel, batch, batch.n_structures, 0)
    u = net(normalised(pooled(feat_a, batch)), rel)
    v = normalised(pooled(feat_b, batch))
    u = u / u.norm(dim=1, keepdim=True)
    v = v / v.norm(dim=1, keepdim=True)
    s = u @ v.T / 0.5
    want = -(torch.diag(s) - torch.logsumexp(s, dim=1)).mean()
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("align", ["pooled", "atoms"])
def test_mse_alignment_adds_up_over_shards(align):
    """Data parallel: the shards' losses (divided by global counts) sum to the whole batch's loss."""
    frames = _frames()
    topo = TopologyCache(frames, 4.0)
    model = make_model(4.0)
    net = build_alignment(align, 32, dtype=torch.float64)
    torch.nn.init.normal_(net.net[-1].weight, std=0.1)
    rot = draw_rotations(4, torch.Generator().manual_seed(6), "learned")
    whole = collate([0, 1, 2, 3], frames, topo)
    na = int(whole.species.shape[0])
    full, _ = training_loss(model, net, whole, "learned", rot, 1.0, 1.0, 1.0)
    parts = 0.0
    for shard in ([0, 2], [1, 3]):
        b = collate(shard, frames, topo)
        loss, _ = training_loss(model, net, b, "learned", rot[shard], 1.0, 1.0, 1.0, 4, na)
        parts = parts + loss
    torch.testing.assert_close(parts, full, rtol=1e-10, atol=1e-12)


def test_config_and_flags():
    from transip_md.cli import build_parser
    from transip_md.train.commands import build_train_config

    assert TrainConfig(data=["x"]).equivariance == "augment"  # the default (docs/training.md, "Which default")
    cfg = TrainConfig(data=["x"], equivariance="learned")
    assert (cfg.align, cfg.align_loss, cfg.align_stop_gradient) == ("atoms", "mse", False)
    assert isinstance(alignment_from_config(cfg, 16, torch.float32), RotationTransform)
    paper = TrainConfig(data=["x"], equivariance="learned", align="pooled")
    assert isinstance(alignment_from_config(paper, 16, torch.float32), PooledAlignment)
    assert alignment_from_config(TrainConfig(data=["x"], equivariance="augment"), 16, torch.float32) is None
    args = build_parser().parse_args(["train", "--data", "x", "--align", "atoms", "--equivariance", "learned"])
    assert build_train_config(args).align == "atoms"
    args = build_parser().parse_args(["train", "--data", "x", "--align", "pooled", "--align-loss", "infonce"])
    assert build_train_config(args).align_loss == "infonce"
    with pytest.raises(ConfigError, match="needs align 'pooled'"):  # contrastive loss on the per-atom default
        build_train_config(build_parser().parse_args(["train", "--data", "x", "--align-loss", "infonce"]))
    for bad in ({"align": "layers"}, {"align": "atoms", "align_loss": "infonce"}, {"align_temperature": 0.0}):
        with pytest.raises(ConfigError):
            TrainConfig.from_dict({"data": ["x"], **bad})


def _tiny_run_config(tmp_path, **overrides) -> TrainConfig:
    """A tiny run on the frames of :func:`_frames` (4 copies of each as separate molecules), written to tmp_path."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    from transip_md.train.data import frame_to_atoms

    data = tmp_path / "d.extxyz"
    if not data.exists():
        atoms = []
        for k in range(4):
            for f in _frames():
                a = frame_to_atoms(f)
                a.info["mol_id"] = f"{f.mol_id}-{k}"
                a.calc = SinglePointCalculator(a, energy=f.energy, forces=f.forces)
                atoms.append(a)
        write(data, atoms, format="extxyz")
    model = {"d_model": 16, "n_layers": 1, "n_heads": 2, "n_rope_freqs": 1, "cutoff": 4.0, "elements": [1, 6, 8]}
    settings = dict(
        data=[str(data)], output=str(tmp_path / "run"), epochs=1, max_atoms=40, val_fraction=0.25, threads=1,
        model=model, symmetry_structures=1, symmetry_rotations=2, progress=False, plots=False,
    )  # fmt: skip
    return TrainConfig(**{**settings, **overrides})


@pytest.mark.parametrize("align", ["pooled", "atoms"])
def test_trainer_uses_the_chosen_alignment(tmp_path, align):
    """A 3-step learned run: the checkpoint holds that alignment net, the log its loss; the export is TransIP."""
    from transip_md.model import load_compiled
    from transip_md.train.checkpoint import load_checkpoint
    from transip_md.train.trainer import Trainer

    cfg = _tiny_run_config(tmp_path, equivariance="learned", align=align, max_steps=3)
    trainer = Trainer(cfg)
    assert isinstance(trainer.transform, PooledAlignment if align == "pooled" else RotationTransform)
    result = trainer.fit()
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["transform_state"]["net.0.weight"].shape == (32, 16 + 9)
    assert result["history"][-1]["train_loss_align"] >= 0.0
    compiled = load_compiled(result["model"])
    assert not any(k.startswith("net.") for k in compiled.module.state_dict())


def test_smooth_l1_force_term_matches_its_formula_and_its_gradient_is_bounded():
    errors = torch.tensor([-2.0, -0.3, -0.04, 0.0, 0.01, 0.05, 0.7], dtype=torch.float64, requires_grad=True)
    beta = 0.05
    e = errors.detach().numpy()
    expected = np.where(np.abs(e) >= beta, np.abs(e) - beta / 2, e**2 / (2 * beta)).sum()
    total = ForceLoss("smooth_l1", beta).total(errors)
    assert float(total.detach()) == pytest.approx(expected, rel=1e-12)
    (grad,) = torch.autograd.grad(total, errors)
    expected_grad = np.where(np.abs(e) >= beta, np.sign(e), e / beta)
    np.testing.assert_allclose(grad.numpy(), expected_grad, rtol=1e-12, atol=1e-15)
    assert float(ForceLoss().total(errors.detach())) == pytest.approx(float((e**2).sum()), rel=1e-12)
    with pytest.raises(ValueError, match="force loss"):
        ForceLoss("l1")


def test_force_loss_config_and_flags():
    from transip_md.cli import build_parser
    from transip_md.train.commands import build_train_config

    assert (TrainConfig(data=["x"]).force_loss, TrainConfig(data=["x"]).force_loss_beta) == ("mse", 0.05)
    args = build_parser().parse_args(["train", "--data", "x", "--force-loss", "smooth_l1", "--force-loss-beta", "0.1"])
    cfg = build_train_config(args)
    assert (cfg.force_loss, cfg.force_loss_beta) == ("smooth_l1", 0.1)
    for bad, key in (({"force_loss": "huber"}, "force_loss"), ({"force_loss_beta": 0.0}, "force_loss_beta")):
        with pytest.raises(ConfigError, match=key):
            TrainConfig.from_dict({"data": ["x"], **bad})


def test_trainer_fits_the_chosen_force_term(tmp_path):
    """One step from the same weights and batch: with beta far above every error, smooth L1 is e^2 / (2 beta),
    so its logged force loss is the squared-error run's divided by 2 beta, which shows the trainer uses the option."""
    from transip_md.train.trainer import Trainer

    logged = {}
    for form in ("mse", "smooth_l1"):
        cfg = _tiny_run_config(
            tmp_path, output=str(tmp_path / form), max_steps=1, force_loss=form, force_loss_beta=1000.0
        )
        logged[form] = Trainer(cfg).fit()["history"][-1]["train_loss_force"]
    assert logged["mse"] > 0.0
    assert logged["smooth_l1"] * 2000.0 == pytest.approx(logged["mse"], rel=1e-9)
