"""The charge-site energy (model/charge_sites.py): exact zero for the neutral singlet, the softmax placement it
claims, size consistency, conservative forces, whole-structure evaluation when chunked, and the model file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from conftest import ethanol, make_model

from transip_md.model import export, load_compiled, predict
from transip_md.model.charge_sites import ChargeSites
from transip_md.model.graph import all_pairs, edge_index, edge_vectors


def _with_sites(cutoff: float | None, channels: int = 3):
    """A random model with charge sites whose site energies are not zero (they start at zero in training)."""
    model = make_model(cutoff, charge_sites=channels)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.sites.parameters():
            p.normal_(0.0, 0.5)
    return model


def _inputs(atoms: Atoms, charge: float, spin: float, pos: torch.Tensor | None = None) -> tuple:
    topo = all_pairs(len(atoms))
    pos = torch.tensor(atoms.positions) if pos is None else pos
    vec = edge_vectors(pos, None, topo)
    batch = torch.zeros(len(atoms), dtype=torch.long)
    return torch.tensor(atoms.numbers), edge_index(topo), vec, torch.tensor([charge]), torch.tensor([spin]), batch


def test_module_is_a_per_structure_softmax_weighted_site_energy():
    """Two structures of 3 and 5 atoms: the output equals the formula written out, and is 0 for (0, 1)."""
    torch.manual_seed(0)
    sites = ChargeSites(8, 2).double()
    with torch.no_grad():
        for p in sites.parameters():
            p.normal_(0.0, 0.7)
    feats = torch.randn(8, 8, dtype=torch.float64)
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1])
    charge = torch.tensor([-1.0, 0.0], dtype=torch.float64)
    spin = torch.tensor([2.0, 1.0], dtype=torch.float64)
    got = sites(feats, charge, spin, batch)
    raw = sites.site(feats)
    score, energy = raw[:, :2], raw[:, 2:]
    c = sites.state(torch.stack([charge, spin - 1], -1)) - sites.state(torch.zeros(2, 2, dtype=torch.float64))
    want = torch.zeros(8, dtype=torch.float64)
    for b in range(2):
        m = batch == b
        w = torch.softmax(score[m], dim=0)
        want[m] = (c[b] * w * energy[m]).sum(-1)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert bool((got[3:] == 0).all())  # the neutral singlet structure: exactly zero
    assert float(got[:3].abs().sum()) > 1e-3


def test_neutral_singlet_energies_equal_the_model_without_sites():
    plain = make_model(4.0)
    sited = _with_sites(4.0)
    result = sited.load_state_dict(plain.state_dict(), strict=False)
    assert all(k.startswith("sites.") for k in result.missing_keys) and not result.unexpected_keys
    a = ethanol()
    torch.testing.assert_close(sited(*_inputs(a, 0.0, 1.0)), plain(*_inputs(a, 0.0, 1.0)), rtol=0, atol=0)
    diff = sited(*_inputs(a, -1.0, 2.0)).sum() - plain(*_inputs(a, -1.0, 2.0)).sum()
    assert abs(float(diff)) > 1e-3


@pytest.mark.parametrize("cutoff", [None, 4.0])
def test_charge_site_forces_are_minus_the_energy_gradient(cutoff):
    model = _with_sites(cutoff)
    a = ethanol()
    pos = torch.tensor(a.positions, requires_grad=True)
    e = model(*_inputs(a, -1.0, 2.0, pos)).sum()
    (grad,) = torch.autograd.grad(e, pos)
    h = 1e-5
    for atom, axis in [(0, 0), (2, 1), (8, 2)]:
        plus, minus = a.positions.copy(), a.positions.copy()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        ep = model(*_inputs(a, -1.0, 2.0, torch.tensor(plus))).sum()
        em = model(*_inputs(a, -1.0, 2.0, torch.tensor(minus))).sum()
        fd = float(ep - em) / (2 * h)
        assert abs(fd - float(grad[atom, axis])) < 1e-6 * max(1.0, abs(fd)), (atom, axis, fd, float(grad[atom, axis]))


def test_charge_site_term_is_size_consistent():
    """k far-apart copies of one molecule: the softmax weights spread over the copies, the weighted mean stays."""
    torch.manual_seed(0)
    sites = ChargeSites(8, 3).double()
    with torch.no_grad():
        for p in sites.parameters():
            p.normal_(0.0, 0.7)
    feats = torch.randn(5, 8, dtype=torch.float64)
    q, m = torch.tensor([1.0]), torch.tensor([2.0])
    one = sites(feats, q, m, torch.zeros(5, dtype=torch.long)).sum()
    for k in (2, 16):
        many = sites(feats.repeat(k, 1), q, m, torch.zeros(5 * k, dtype=torch.long)).sum()
        torch.testing.assert_close(many, one, rtol=1e-12, atol=1e-12)


def test_whole_model_gaps_stay_finite_as_copies_are_added():
    model = _with_sites(4.0)
    gaps = {}
    for k in (1, 16, 32):
        atoms = Atoms()
        for i in range(k):
            w = molecule("H2O")
            w.translate([30.0 * i, 0, 0])
            atoms += w
        e0 = predict(model, atoms.numbers, atoms.positions).energy
        e_anion = predict(model, atoms.numbers, atoms.positions, charge=-1, multiplicity=2).energy
        gaps[k] = e0 - e_anion
    assert abs(gaps[1]) > 1e-3
    assert abs(gaps[32] - gaps[16]) < 0.2 * abs(gaps[1]), gaps


def test_chunked_inference_keeps_charged_structures_whole():
    """The softmax needs every centre of a charged structure: a chunk size does not change the result."""
    model = _with_sites(4.0)
    for charge, spin in [(-1.0, 2.0), (0.0, 1.0), (0.0, 3.0)]:
        args = _inputs(ethanol(), charge, spin)
        e_one, g_one = model.energy_and_gradient(*args, -1, 0)
        e_chunk, g_chunk = model.energy_and_gradient(*args, -1, 2)
        torch.testing.assert_close(e_chunk.sum(), e_one.sum(), rtol=0, atol=1e-10)
        torch.testing.assert_close(g_chunk, g_one, rtol=0, atol=1e-10)


def test_model_file_with_charge_sites_gives_the_eager_numbers(tmp_path):
    model = _with_sites(4.0)
    path = export(model, tmp_path / "sites.pt", {"purpose": "tests"})
    compiled = load_compiled(path)
    assert compiled.metadata["config"]["charge_sites"] == 3
    a = ethanol()
    for charge, mult in [(0, 1), (-1, 2), (1, 2), (0, 3)]:
        eager = predict(model, a.numbers, a.positions, charge=charge, multiplicity=mult)
        loaded = predict(compiled, a.numbers, a.positions, charge=charge, multiplicity=mult)
        assert abs(eager.energy - loaded.energy) < 1e-9
        np.testing.assert_allclose(loaded.forces, eager.forces, rtol=0, atol=1e-9)
