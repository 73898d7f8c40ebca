"""Covalent-scaled radial inputs (``covalent_scaled_radial``): what the splines read, and the physics kept.

Locality, the smooth cutoff and the chunked engine path are tested with the plain model's tests
(test_model_physics.py, parametrized over the option)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.data import covalent_radii
from conftest import ethanol, make_model, water_box
from test_model_physics import fd_forces

from transip_md.model import eager_model, export, load_compiled, predict
from transip_md.model.config import TransIPConfig
from transip_md.model.engine import edge_topology, model_inputs
from transip_md.model.transip import REFERENCE_RADIUS_SUM, TransIP


def _spline_inputs(model: TransIP, atoms: Atoms) -> tuple[torch.Tensor, torch.Tensor]:
    """The distances the pair-bias and token-radial splines receive for ``atoms`` (captured by hooks)."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        model.radial_bias.register_forward_pre_hook(lambda _m, args: seen.__setitem__("pair", args[0].detach())),
        model.token_radial.register_forward_pre_hook(lambda _m, args: seen.__setitem__("token", args[0].detach())),
    ]
    try:
        predict(model, atoms.numbers, atoms.positions)
    finally:
        for hook in hooks:
            hook.remove()
    return seen["pair"], seen["token"]


def test_splines_read_distances_in_units_of_the_covalent_radius_sum():
    model = make_model(4.0, covalent_scaled_radial=True)
    r = 1.1
    atoms = Atoms("CH", positions=[[0.0, 0.0, 0.0], [r, 0.0, 0.0]])
    pair, token = _spline_inputs(model, atoms)
    expected = r * REFERENCE_RADIUS_SUM / (covalent_radii[6] + covalent_radii[1])
    # each centre's neighbourhood is (centre, neighbour): the off-diagonal pair and the neighbour token
    assert pair[:, 0, 1].double().numpy() == pytest.approx([expected, expected], rel=1e-6)
    assert token[:, 1].double().numpy() == pytest.approx([expected, expected], rel=1e-6)
    plain = make_model(4.0)
    pair_plain, _ = _spline_inputs(plain, atoms)
    assert pair_plain[:, 0, 1].double().numpy() == pytest.approx([r, r], rel=1e-6)


def test_carbon_only_model_equals_the_plain_one():
    """For C-C pairs the scaled distance is the distance, so identical weights give identical numbers."""
    cfg = {"elements": [6], "cutoff": 4.0, "d_model": 32, "n_heads": 2, "dtype": "float64"}
    torch.manual_seed(3)
    plain = TransIP(TransIPConfig(**cfg)).eval()
    scaled = TransIP(TransIPConfig(**cfg, covalent_scaled_radial=True)).eval()
    assert scaled.radial_bias.n_knots == plain.radial_bias.n_knots  # no stretch for a carbon-only model
    scaled.load_state_dict(plain.state_dict())
    atoms = Atoms("C4", positions=[[0, 0, 0], [1.5, 0, 0], [2.1, 1.3, 0], [3.4, 1.4, 0.8]])
    a = predict(plain, atoms.numbers, atoms.positions)
    b = predict(scaled, atoms.numbers, atoms.positions)
    assert b.energy == pytest.approx(a.energy, abs=1e-12)
    assert np.abs(b.forces - a.forces).max() < 1e-12


def test_hydrogen_pairs_stretch_the_splines_at_the_same_knot_spacing():
    plain = make_model(4.0)
    scaled = make_model(4.0, covalent_scaled_radial=True)
    for name in ("radial_bias", "token_radial"):
        a, b = getattr(plain, name), getattr(scaled, name)
        assert b.n_knots > a.n_knots
        # exactly the plain spacing: the plain spline's knots are the first knots of the stretched one
        assert b.inv_spacing == pytest.approx(a.inv_spacing, rel=1e-12)


def _learned(seed: int = 0) -> TransIP:
    """A covalent-scaled model with learned radii moved off the table (so they are not the fixed ones)."""
    model = make_model(4.0, seed=seed, covalent_scaled_radial=True, learned_radii=True)
    with torch.no_grad():
        model.log_radii.add_(torch.linspace(-0.2, 0.3, model.log_radii.numel(), dtype=model.log_radii.dtype))
    return model


@pytest.mark.parametrize("learned", [False, True], ids=["table_radii", "learned_radii"])
@pytest.mark.parametrize("case", ["molecule", "charged_radical", "periodic"])
def test_forces_match_finite_differences(case, learned):
    def build():
        return _learned() if learned else make_model(4.0, covalent_scaled_radial=True)

    if case == "periodic":
        model, atoms, charge, spin = build(), water_box(2), 0, 1
    else:
        model, atoms = build(), ethanol()
        charge, spin = (0, 1) if case == "molecule" else (1, 2)
    pred = predict(model, atoms.numbers, atoms.positions, atoms.cell, atoms.pbc, charge, spin)
    assert np.abs(pred.forces).max() > 1e-2, "forces too small for a meaningful check"
    fd = fd_forces(model, atoms, charge, spin, atoms_idx=range(4))
    assert np.abs(fd[:4] - pred.forces[:4]).max() < 1e-6


def test_global_models_refuse_the_option():
    with pytest.raises(ValueError, match="covalent_scaled_radial needs a local model"):
        TransIPConfig(cutoff=None, covalent_scaled_radial=True)


def test_learned_radii_start_at_the_table_and_give_its_numbers():
    table = make_model(4.0, covalent_scaled_radial=True)
    learned = make_model(4.0, covalent_scaled_radial=True, learned_radii=True)
    radii = learned.repulsion.covalent_radii[learned.elements].to(learned.log_radii.dtype)
    torch.testing.assert_close(torch.exp(learned.log_radii.detach()), radii)
    learned.load_state_dict({**table.state_dict(), "log_radii": learned.log_radii.detach()})
    atoms = ethanol()
    a = predict(table, atoms.numbers, atoms.positions)
    b = predict(learned, atoms.numbers, atoms.positions)
    assert b.energy == pytest.approx(a.energy, abs=1e-12)
    assert np.abs(b.forces - a.forces).max() < 1e-12


def test_learned_radii_change_the_numbers_and_get_gradients_from_a_force_loss():
    """The radii are read (moving one changes energies and forces) and trainable through the double backward of
    a force loss (the trainer's conservative forces)."""
    model = _learned()
    atoms = ethanol()
    before = predict(model, atoms.numbers, atoms.positions)
    with torch.no_grad():
        model.log_radii[0] += 0.1  # hydrogen
    after = predict(model, atoms.numbers, atoms.positions)
    assert abs(after.energy - before.energy) > 1e-4
    pos = torch.tensor(atoms.positions, requires_grad=True)
    topo = edge_topology(model.cutoff, atoms.positions, atoms.cell.array, atoms.pbc)
    src, dst = torch.from_numpy(topo.src), torch.from_numpy(topo.dst)
    vec = pos[dst] - pos[src]  # the edge convention of model/engine.py (no periodic shifts: a molecule)
    energy = model(*model_inputs(torch.from_numpy(atoms.numbers), torch.stack([src, dst]), vec, 0, 1)).sum()
    (forces,) = torch.autograd.grad(energy, pos, create_graph=True)
    (forces**2).sum().backward()
    grad = model.log_radii.grad
    assert grad is not None
    # elements [H, C, N, O]: ethanol has no N, so its radius gets no gradient and the others do
    assert [bool(g != 0) for g in grad] == [True, True, False, True]


def test_learned_radii_need_the_covalent_scaling():
    with pytest.raises(ValueError, match="learned_radii needs covalent_scaled_radial"):
        TransIPConfig(cutoff=4.0, learned_radii=True)


@pytest.mark.parametrize("learned", [False, True], ids=["table_radii", "learned_radii"])
def test_model_file_equals_eager(tmp_path, learned):
    """Exported (TorchScript) and read back, with the eager model rebuilt from its metadata: same numbers."""
    model = _learned() if learned else make_model(4.0, covalent_scaled_radial=True)
    compiled = load_compiled(export(model, tmp_path / "m.pt"))
    assert compiled.metadata["config"]["covalent_scaled_radial"] is True
    assert compiled.metadata["config"]["learned_radii"] is learned
    atoms = ethanol()
    a = predict(model, atoms.numbers, atoms.positions)
    b = predict(compiled, atoms.numbers, atoms.positions)
    c = predict(eager_model(compiled), atoms.numbers, atoms.positions)
    for other in (b, c):
        assert other.energy == pytest.approx(a.energy, abs=1e-10)
        assert np.abs(other.forces - a.forces).max() < 1e-10
