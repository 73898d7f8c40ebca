"""The physics priors inside every model file: nuclear repulsion and size-consistent charge/spin."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.data import covalent_radii
from conftest import ethanol, make_model

from transip_md.model import predict
from transip_md.model.graph import all_pairs, edge_index, edge_vectors
from transip_md.model.priors import NuclearRepulsion, StateEnergy

ORGANIC = [1, 6, 7, 8, 9, 15, 16, 17, 35]


def test_pair_repulsion_is_monotonic_steep_and_zero_beyond_its_range():
    rep = NuclearRepulsion(range_factor=1.0).double()
    for zi, zj in itertools.combinations_with_replacement(ORGANIC, 2):
        r_off = covalent_radii[zi] + covalent_radii[zj]
        r = torch.linspace(0.2 * r_off, 1.3 * r_off, 400, dtype=torch.float64)
        e = rep.pair_energy(torch.full_like(r, zi).long(), torch.full_like(r, zj).long(), r)
        inside = r < r_off
        assert bool((e[~inside] == 0).all())
        assert bool((torch.diff(e[inside]) < 0).all()), (zi, zj)  # rises as the atoms approach
        e_half = rep.pair_energy(torch.tensor([zi]), torch.tensor([zj]), torch.tensor([0.5 * r_off]))
        assert float(e_half) > 5.0, (zi, zj, float(e_half))  # eV: a wall, not a bump


def test_pair_repulsion_derivative_matches_finite_differences_and_vanishes_smoothly():
    rep = NuclearRepulsion(range_factor=1.0).double()
    zi, zj = torch.tensor([6]), torch.tensor([8])
    r_off = covalent_radii[6] + covalent_radii[8]
    for r0 in (0.3, 0.7, 1.0, 0.99 * r_off):
        r = torch.tensor([r0], dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(rep.pair_energy(zi, zj, r).sum(), r)
        h = 1e-6
        plus = rep.pair_energy(zi, zj, torch.tensor([r0 + h], dtype=torch.float64))
        minus = rep.pair_energy(zi, zj, torch.tensor([r0 - h], dtype=torch.float64))
        fd = (plus - minus) / (2 * h)
        assert abs(float(g) - float(fd)) < 1e-5 * max(1.0, abs(float(fd)))
    r = torch.tensor([r_off - 1e-4], dtype=torch.float64, requires_grad=True)
    e = rep.pair_energy(zi, zj, r)
    (g,) = torch.autograd.grad(e.sum(), r)
    assert abs(float(e.detach())) < 1e-9 and abs(float(g)) < 1e-5  # value and slope meet zero at the switch radius


@pytest.mark.parametrize("cutoff", [None, 4.0])
def test_model_energy_rises_steeply_when_a_bond_is_compressed(cutoff):
    model = make_model(cutoff)
    atoms = ethanol()
    c0, c1 = atoms.positions[0], atoms.positions[1]
    axis = (c1 - c0) / np.linalg.norm(c1 - c0)
    energies = []
    distances = np.linspace(1.5, 0.5, 21)
    for d in distances:
        pos = atoms.positions.copy()
        pos[1] = c0 + d * axis
        energies.append(predict(model, atoms.numbers, pos).energy)
    energies = np.array(energies)
    short = distances < 0.7 * 1.5
    assert (np.diff(energies[short]) > 0).all()
    assert energies[-1] - energies[0] > 20.0  # eV


def _dimers(k: int, spacing: float = 30.0) -> Atoms:
    out = Atoms()
    for i in range(k):
        w = molecule("H2O")
        w.translate([i * spacing, 0, 0])
        out += w
    return out


def test_charge_and_spin_energies_are_size_consistent():
    """k far-apart waters in one structure: the vertical gaps converge as k grows instead of growing as k.

    (A per-atom charge/spin input that does not shrink with N gives gap(2k) - gap(k) = k gap(1) here.)"""
    model = make_model(4.0)
    gaps = {}
    for k in (1, 2, 16, 32):
        atoms = _dimers(k)
        e0 = predict(model, atoms.numbers, atoms.positions, charge=0, multiplicity=1).energy
        e1 = predict(model, atoms.numbers, atoms.positions, charge=1, multiplicity=2).energy
        e3 = predict(model, atoms.numbers, atoms.positions, charge=0, multiplicity=3).energy
        gaps[k] = np.array([e1 - e0, e3 - e0])
    scale = np.maximum.reduce([np.abs(gaps[1]), np.abs(gaps[2]), np.abs(gaps[2] - gaps[1])])
    assert (scale > 1e-3).all()
    assert (np.abs(gaps[32] - gaps[16]) < 0.2 * scale).all(), gaps


def _ethanol_inputs(charge: float, spin: float) -> tuple:
    """Model inputs (all pairs, one structure) of ethanol with total charge and multiplicity."""
    atoms = ethanol()
    topo = all_pairs(len(atoms))
    vec = edge_vectors(torch.tensor(atoms.positions), None, topo)
    batch = torch.zeros(len(atoms), dtype=torch.long)
    return torch.tensor(atoms.numbers), edge_index(topo), vec, torch.tensor([charge]), torch.tensor([spin]), batch


def test_neutral_singlet_does_not_depend_on_the_atom_count_argument():
    model = make_model(4.0)
    many = torch.tensor([1000.0], dtype=torch.float64)
    neutral = _ethanol_inputs(0.0, 1.0)
    assert torch.equal(model(*neutral), model(*neutral, -1, many))
    charged = _ethanol_inputs(1.0, 2.0)
    assert not torch.equal(model(*charged), model(*charged, -1, many))


def test_chunked_inference_uses_the_whole_structure_atom_count():
    """Chunks see a few centres at a time; the charge/spin conditioning must still use all N atoms."""
    model = make_model(4.0)
    args = _ethanol_inputs(1.0, 2.0)
    e_one, g_one = model.energy_and_gradient(*args, -1, 0)
    e_chunk, g_chunk = model.energy_and_gradient(*args, -1, 2)
    torch.testing.assert_close(e_chunk, e_one, rtol=0, atol=1e-10)
    torch.testing.assert_close(g_chunk, g_one, rtol=0, atol=1e-10)


def test_state_energy_is_zero_for_the_neutral_singlet_and_linear_part_is_exact():
    state = StateEnergy()
    state.set_linear(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    q = torch.tensor([0.0, 1.0, -1.0, 0.0])
    m = torch.tensor([1.0, 2.0, 2.0, 3.0])
    e = state(q, m)
    torch.testing.assert_close(e, torch.tensor([0.0, 10.0, 8.0, 22.0], dtype=torch.float64))


def test_shipped_model_has_a_repulsive_wall_between_any_two_atoms():
    """The shipped model: pushing two atoms of ethanol together below 0.7 x their bond length (covalent-radius sum)
    raises the energy monotonically and steeply: C-C, C-O, C-H and two methyl H atoms."""
    from transip_md.data import default_model_path
    from transip_md.model import load_compiled

    model = load_compiled(default_model_path())
    atoms = ethanol()
    for i, j in ((0, 1), (1, 2), (0, 3), (3, 4)):
        axis = atoms.positions[j] - atoms.positions[i]
        axis /= np.linalg.norm(axis)
        bond = covalent_radii[atoms.numbers[i]] + covalent_radii[atoms.numbers[j]]
        energies = []
        for d in np.linspace(0.7 * bond, 0.3 * bond, 16):
            pos = atoms.positions.copy()
            pos[j] = atoms.positions[i] + d * axis
            energies.append(predict(model, atoms.numbers, pos).energy)
        assert (np.diff(energies) > 0).all(), (i, j, energies)
        assert energies[-1] - energies[0] > 5.0, (i, j, energies)  # eV
