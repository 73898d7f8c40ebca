"""Learned charge/spin spread (model/spread.py): starts as the even spread, forces stay -dE/dx, chunked and
split evaluations (the contract's format-3 recipe, what LAMMPS does over MPI ranks) equal the whole structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ethanol, make_model, water_box
from test_model_physics import fd_forces

from transip_md.model import TransIPConfig, export, load_compiled, predict
from transip_md.model.graph import cutoff_pairs, edge_index, edge_vectors
from transip_md.model.symmetrize import symmetrize
from transip_md.model.transip import TransIP


def _graph(model, atoms):
    """(species, edge_index, edge_vec (Å), batch) of one isolated molecule, all atoms centres."""
    topo = cutoff_pairs(atoms.positions, np.zeros((3, 3)), np.zeros(3, dtype=bool), float(model.cutoff))
    edge_vec = edge_vectors(torch.as_tensor(atoms.positions), torch.zeros(3, 3, dtype=torch.float64), topo)
    species = torch.as_tensor(atoms.numbers, dtype=torch.long)
    return species, edge_index(topo), edge_vec, torch.zeros(len(atoms), dtype=torch.long)


def test_a_new_spread_is_the_even_spread_exactly():
    torch.manual_seed(0)
    cfg = dict(elements=[1, 6, 7, 8], cutoff=4.0, dtype="float64", d_model=32, n_heads=2)
    even = TransIP(TransIPConfig(**cfg)).eval()
    spread = TransIP(TransIPConfig(**cfg, learned_charge_spread=True)).eval()
    missing, unexpected = spread.load_state_dict(even.state_dict(), strict=False)
    assert missing and all(k.startswith("spread.") for k in missing) and not unexpected
    assert not any(k.startswith("spread") for k in even.state_dict())  # plain models keep their parameter names
    atoms = ethanol()
    for q, m in [(0, 1), (1, 2), (-1, 2), (0, 3)]:
        a = predict(even, atoms.numbers, atoms.positions, charge=q, multiplicity=m)
        b = predict(spread, atoms.numbers, atoms.positions, charge=q, multiplicity=m)
        assert b.energy == pytest.approx(a.energy, abs=1e-12)
        np.testing.assert_allclose(b.forces, a.forces, atol=1e-12)


@pytest.mark.parametrize("chunk", [0, 3])
def test_uneven_spread_forces_match_finite_differences(chunk):
    model = make_model(4.0, learned_charge_spread=True)
    atoms = ethanol()
    even = make_model(4.0)
    p = predict(model, atoms.numbers, atoms.positions, charge=1, multiplicity=2, chunk_size=chunk)
    e_even = predict(even, atoms.numbers, atoms.positions, charge=1, multiplicity=2).energy
    assert abs(p.energy - e_even) > 1e-3  # the random spread is uneven: it changes the charged energy
    fd = fd_forces(model, atoms, charge=1, spin=2, chunk_size=chunk)
    np.testing.assert_allclose(p.forces, fd, atol=1e-6)


def test_chunked_equals_whole_and_neutral_singlet_ignores_the_spread():
    model = make_model(4.0, learned_charge_spread=True)
    atoms = water_box(2)
    whole = predict(
        model, atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, charge=1, multiplicity=2, chunk_size=0
    )
    chunked = predict(
        model, atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, charge=1, multiplicity=2, chunk_size=5
    )
    assert chunked.energy == pytest.approx(whole.energy, abs=1e-10)
    np.testing.assert_allclose(chunked.forces, whole.forces, atol=1e-10)
    plain = make_model(4.0)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("spread.")})
    a = predict(model, atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc)
    b = predict(plain, atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc)
    assert a.energy == pytest.approx(b.energy, abs=1e-12)  # (Q, M - 1) = 0: no input for the spread to share


@pytest.mark.parametrize("symmetrised", [False, True])
def test_two_pieces_with_the_contract_recipe_equal_the_whole(tmp_path, symmetrised):
    """Split a charged molecule's centres in two (as two MPI ranks would), sum W, call
    energy_gradients_given_spread, sum dE/dW, add charge_spread_sum_gradient: the whole structure's numbers
    (also for the inference-time symmetrised file, whose wrapper carries the same methods)."""
    compiled = load_compiled(export(make_model(4.0, learned_charge_spread=True), tmp_path / "s.pt"))
    model = symmetrize(compiled, "tetrahedral", seed=1).module if symmetrised else compiled.module
    atoms = ethanol()
    species, edge_index, edge_vec, batch = _graph(model, atoms)
    q, s = torch.tensor([1.0], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64)
    e_all, g_all = model.energy_and_gradient(species, edge_index, edge_vec, q, s, batch, -1, 0, None)
    n = len(atoms)
    pieces = [np.arange(0, 4), np.arange(4, n)]
    graphs = []
    for centres in pieces:
        # this piece's centres first, then every atom as a possible neighbour ("ghosts")
        sel = np.isin(edge_index[0].numpy(), centres)
        remap = np.full(n, -1)
        remap[centres] = np.arange(len(centres))
        sub_index = torch.stack([torch.as_tensor(remap[edge_index[0].numpy()[sel]]), edge_index[1][sel] + len(centres)])
        sub_species = torch.cat([species[centres], species])
        graphs.append(
            (centres, sel, sub_species, sub_index, edge_vec[sel], torch.zeros(len(sub_species), dtype=torch.long))
        )
    natoms = torch.tensor([float(n)], dtype=torch.float64)
    with pytest.raises((RuntimeError, torch.jit.Error), match="spread_total"):
        c, sel, sp, idx, vec, b = graphs[0]
        model.energy_and_gradient(sp, idx, vec, q, s, b, len(c), 0, natoms)
    # the neutral singlet has nothing to spread: a piece alone is exact and accepted
    c, sel, sp, idx, vec, b = graphs[0]
    zero, one = torch.tensor([0.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)
    e_piece, _ = model.energy_and_gradient(sp, idx, vec, zero, one, b, len(c), 2, natoms)
    e_whole, _ = model.energy_and_gradient(species, edge_index, edge_vec, zero, one, batch, -1, 0, None)
    torch.testing.assert_close(e_piece, e_whole[torch.as_tensor(c)], rtol=0, atol=1e-12)
    total = sum(model.charge_spread_sums(sp, idx, vec, b, 1, len(c)) for c, _, sp, idx, vec, b in graphs)
    outs = [
        model.energy_gradients_given_spread(sp, idx, vec, q, s, b, len(c), 2, natoms, total)
        for c, _, sp, idx, vec, b in graphs
    ]
    weight_grad = sum(o[2] for o in outs)
    assert abs(float(weight_grad)) > 1e-6  # the part through W is not zero: the test would see it missing
    energies = torch.zeros(n, dtype=torch.float64)
    grad = torch.zeros_like(edge_vec)
    for (c, sel, sp, idx, vec, b), (e, g, _) in zip(graphs, outs, strict=True):
        energies[torch.as_tensor(c)] = e
        grad[torch.as_tensor(sel)] = g + model.charge_spread_sum_gradient(sp, idx, vec, b, weight_grad, len(c))
    torch.testing.assert_close(energies, e_all, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad, g_all, rtol=0, atol=1e-11)


def test_format_version_three_only_for_spread_models(tmp_path):
    plain = load_compiled(export(make_model(4.0), tmp_path / "p.pt"))
    spread = load_compiled(export(make_model(4.0, learned_charge_spread=True), tmp_path / "s.pt"))
    assert plain.metadata["format_version"] == 2 and spread.metadata["format_version"] == 3
    assert bool(spread.module.learned_spread) and not bool(plain.module.learned_spread)
    with pytest.raises(ValueError, match="local model"):
        TransIPConfig(cutoff=None, learned_charge_spread=True)


def test_symmetrised_spread_model_is_the_frame_average_with_fd_forces(tmp_path):
    """A symmetrised learned-spread file: energy = mean of the base's energies over the rotated frames, forces
    = -dE/dx by finite differences, the spread methods kept (format 3), and the file round-trips."""
    from transip_md.model.symmetrize import export_symmetrized, frame_rotations

    base = load_compiled(export(make_model(4.0, learned_charge_spread=True), tmp_path / "s.pt"))
    path = export_symmetrized(base, tmp_path / "sym.pt", "tetrahedral", seed=4)
    sym = load_compiled(path)
    assert bool(sym.module.learned_spread) and sym.metadata["format_version"] == 3
    atoms = ethanol()
    centre = atoms.positions.mean(axis=0)
    energies = []
    for rot in frame_rotations("tetrahedral", 4).numpy():
        rotated = (atoms.positions - centre) @ rot.T
        energies.append(predict(base, atoms.numbers, rotated, charge=1, multiplicity=2).energy)
    p = predict(sym, atoms.numbers, atoms.positions, charge=1, multiplicity=2, chunk_size=3)
    assert p.energy == pytest.approx(float(np.mean(energies)), abs=1e-9)
    assert np.std(energies) > 1e-4  # the frames differ: the average is not one frame's energy by accident
    np.testing.assert_allclose(p.forces, fd_forces(sym, atoms, charge=1, spin=2, chunk_size=3), atol=1e-6)
