"""Direct-force pretraining (train/direct.py): the direct outputs' bookkeeping, their prior forces against finite
differences, the phase switch of the trainer, exact resume across it, and the refusals."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.io import iread, write

from transip_md.data import legacy_dataset_path
from transip_md.model import TransIP, TransIPConfig, load_compiled
from transip_md.train import losses
from transip_md.train.config import ConfigError, TrainConfig
from transip_md.train.data import Batch, Frame, TopologyCache, collate
from transip_md.train.direct import DirectForceHead, direct_outputs
from transip_md.train.trainer import Trainer

CUTOFF = 4.0


class ConstantHead(torch.nn.Module):
    """Every token's edge vector weighted by the same number: the direct force is c * sum_j r_ij."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.full((*h.shape[:-1], 1), self.c, dtype=h.dtype)


def _model(repulsion: float = 1.0) -> TransIP:
    cfg = TransIPConfig(
        elements=[1, 6, 8], d_model=16, n_layers=2, n_heads=2, n_rope_freqs=1, cutoff=CUTOFF,
        repulsion_range=repulsion, dtype="float64",
    )  # fmt: skip
    torch.manual_seed(0)
    model = TransIP(cfg)
    with torch.no_grad():
        model.energy_scale.fill_(0.7)
    return model


def _batch(molecules: list[tuple[list[int], np.ndarray]]) -> Batch:
    """A batch of neutral singlet molecules (atomic numbers, positions Å), edges by the trainer's neighbour lists."""
    frames = [Frame(np.array(z), x, 0.0, np.zeros_like(x), mol_id=str(k)) for k, (z, x) in enumerate(molecules)]
    return collate(list(range(len(frames))), frames, TopologyCache(frames, CUTOFF))


def _molecules(seed: int = 0) -> list[tuple[list[int], np.ndarray]]:
    """Three molecules of different sizes, so the centres fall into several length groups."""
    rng = np.random.default_rng(seed)
    out = []
    for n in (5, 9, 14):
        z = [int(v) for v in rng.choice([1, 6, 8], size=n)]
        out.append((z, rng.uniform(0.0, 1.1 * n ** (1 / 3), size=(n, 3)) + 0.3 * np.arange(n)[:, None] ** 0.5))
    return out


@pytest.mark.parametrize("max_groups", [1, 4])
def test_direct_energies_are_the_model_energies_and_forces_sum_the_edge_vectors(max_groups):
    model = _model(repulsion=0.0)
    model.max_length_groups = max_groups
    model.group_cost_pairs = 0
    batch = _batch(_molecules())
    vec = batch.edge_vectors(None)
    counts = sorted(torch.bincount(batch.edge_index[0]).tolist())
    n_groups = len(model._length_groups(counts)) - 1
    assert n_groups == 1 if max_groups == 1 else n_groups > 1
    energies, forces, features = direct_outputs(model, ConstantHead(0.25), batch, vec)
    args = (batch.species, batch.edge_index, vec, batch.charge, batch.spin, batch.batch)
    torch.testing.assert_close(energies, model(*args), rtol=0, atol=1e-12)
    torch.testing.assert_close(features, model.atom_features(*args), rtol=0, atol=1e-12)
    # independent of the model's sequences: c * energy_scale * sum over each atom's edges of r_j - r_i
    expected = np.zeros((len(batch.species), 3))
    np.add.at(expected, batch.edge_index[0].numpy(), vec.numpy())
    np.testing.assert_allclose(forces.numpy(), 0.25 * 0.7 * expected, rtol=0, atol=1e-12)


def test_direct_forces_include_the_repulsion_prior_forces():
    """Head weights zero: what remains is -d(prior energy)/dx, checked by central finite differences."""
    model = _model(repulsion=1.0)
    z = [8, 1, 1, 6]
    x = np.array([[0.0, 0.0, 0.0], [0.35, 0.1, 0.0], [-0.2, 0.5, 0.1], [1.0, -0.4, 0.3]])  # short contacts
    _, forces, _ = direct_outputs(model, ConstantHead(0.0), _batch([(z, x)]), _batch([(z, x)]).edge_vectors(None))

    def prior_energy(xx: np.ndarray) -> float:
        b = _batch([(z, xx)])
        args = (b.species, b.edge_index, b.edge_vectors(None), b.charge, b.spin, b.batch, -1)
        return float(model.prior_energies(*args).sum().detach())

    h = 1e-5
    fd = np.zeros_like(x)
    for i in range(len(z)):
        for k in range(3):
            xp, xm = x.copy(), x.copy()
            xp[i, k] += h
            xm[i, k] -= h
            fd[i, k] = -(prior_energy(xp) - prior_energy(xm)) / (2 * h)
    assert np.abs(fd).max() > 1.0  # the repulsion is active at these contacts
    np.testing.assert_allclose(forces.numpy(), fd, rtol=1e-6, atol=1e-6)


def test_direct_head_learns_through_the_loss():
    model = _model()
    head = DirectForceHead(16, torch.float64)
    batch = _batch(_molecules())
    rot = losses.random_rotations(3, torch.Generator().manual_seed(1))
    loss, parts = losses.training_loss(model, None, batch, "augment", rot, 1.0, 1.0, 0.0, direct_head=head)
    loss.backward()
    assert parts["loss_force"] > 0
    assert head.net[0].weight.grad.abs().sum() > 0 and model.embed.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------- trainer
@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny.extxyz"
    with gzip.open(legacy_dataset_path(), "rt") as fh:
        write(path, list(iread(fh, index="0:320:10", format="extxyz")), format="extxyz")
    return path


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        data=[str(data)], output=str(out), epochs=4, max_frames=16, max_val_frames=4, max_atoms=100, lr=5e-3,
        warmup_steps=2, equivariance="augment", threads=1, progress=False, plots=False, symmetry_structures=0,
        direct_forces=0.5, deterministic=True,
        model={"d_model": 16, "n_layers": 1, "n_heads": 2, "n_rope_freqs": 1, "n_rbf": 16, "cutoff": 5.0},
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def test_trainer_fits_direct_forces_for_its_share_then_conservative(tiny, tmp_path, monkeypatch):
    calls = []
    real = losses.training_loss

    def spy(*args, **kw):
        calls.append(args[11] is not None)
        return real(*args, **kw)

    monkeypatch.setattr("transip_md.train.trainer.training_loss", spy)
    trainer = Trainer(_cfg(tiny, tmp_path / "run"))
    result = trainer.fit()
    total = trainer.total_steps  # the schedule's length; epochs may pack a step more or fewer
    assert len(calls) == trainer.step and calls == [step / total < 0.5 for step in range(trainer.step)]
    assert 0 < sum(calls) < len(calls)
    flags = [row["direct_forces"] for row in result["history"]]  # 1: the epoch's last step fitted direct forces
    assert flags == [int((row["step"] - 1) / total < 0.5) for row in result["history"]]
    assert flags[0] == 1 and flags[-1] == 0
    assert flags[result["best_epoch"] - 1] == 0  # the exported epoch was trained conservatively
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ck["direct_over"] and ck["direct_head_state"]
    # the model file has the model's parameters only (no head): it stays conservative
    exported = load_compiled(tmp_path / "run" / "model.pt").module.state_dict()
    assert set(exported) == set(trainer.model.state_dict())


def test_resume_across_the_switch_is_exact(tiny, tmp_path, monkeypatch):
    full = Trainer(_cfg(tiny, tmp_path / "full", direct_forces=0.6))
    full.fit()
    part = Trainer(_cfg(tiny, tmp_path / "part", direct_forces=0.6))
    real = part._run_epoch

    def two_epochs(t0):
        real(t0)
        if part.epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(part, "_run_epoch", two_epochs)
    with pytest.raises(KeyboardInterrupt):
        part.fit()
    resumed = Trainer(_cfg(tiny, tmp_path / "part", direct_forces=0.6, resume=str(tmp_path / "part")))
    assert resumed.epoch == 2 and resumed.in_direct_phase()  # the switch (60 %) comes after the kill
    resumed.fit()
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=True)
    for key in ("model_state", "ema_state", "direct_head_state"):
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), (key, name)


def test_direct_forces_refused_for_global_models_and_whole_runs(tiny, tmp_path):
    with pytest.raises(ConfigError, match="local model"):
        _cfg(tiny, tmp_path, model={"d_model": 16, "n_layers": 1, "n_heads": 2, "cutoff": None}).check()
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        _cfg(tiny, tmp_path, direct_forces=1.0).check()


def test_cli_flag_sets_the_share(tiny):
    from transip_md.cli import build_parser
    from transip_md.train.commands import build_train_config

    args = build_parser().parse_args(["train", "--data", str(tiny), "--direct-forces", "0.3"])
    assert build_train_config(args).direct_forces == 0.3
