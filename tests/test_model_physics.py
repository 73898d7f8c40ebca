"""Physics of the TransIP network: conservative forces, invariances, smooth cutoff, locality."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from conftest import ethanol, make_model, water_box

from transip_md.model import predict


def fd_forces(model, atoms: Atoms, charge=0, spin=1, h=1e-5, atoms_idx=None, **predict_kw) -> np.ndarray:
    """Central finite differences of the energy (eV/Å); ``predict_kw`` go to ``predict`` (e.g. chunk_size)."""
    out = np.zeros((len(atoms), 3))
    idx = range(len(atoms)) if atoms_idx is None else atoms_idx
    for i in idx:
        for k in range(3):
            e = []
            for sign in (1, -1):
                pos = atoms.positions.copy()
                pos[i, k] += sign * h
                e.append(predict(model, atoms.numbers, pos, atoms.cell, atoms.pbc, charge, spin, **predict_kw).energy)
            out[i, k] = -(e[0] - e[1]) / (2 * h)
    return out


@pytest.mark.parametrize(
    "case",
    ["molecule", "charged_radical", "periodic"],
)
def test_forces_match_finite_differences(case):
    if case == "periodic":
        model, atoms, charge, spin = make_model(4.0), water_box(2), 0, 1
    else:
        model, atoms = make_model(None), ethanol()
        charge, spin = (0, 1) if case == "molecule" else (1, 2)
    pred = predict(model, atoms.numbers, atoms.positions, atoms.cell, atoms.pbc, charge, spin)
    assert np.abs(pred.forces).max() > 1e-2, "forces too small for a meaningful check"
    fd = fd_forces(model, atoms, charge, spin)
    assert np.abs(fd - pred.forces).max() < 1e-6


def test_charge_and_spin_change_the_energy():
    model, atoms = make_model(None), ethanol()
    e0 = predict(model, atoms.numbers, atoms.positions, charge=0, multiplicity=1).energy
    e1 = predict(model, atoms.numbers, atoms.positions, charge=1, multiplicity=2).energy
    e2 = predict(model, atoms.numbers, atoms.positions, charge=0, multiplicity=3).energy
    assert abs(e0 - e1) > 1e-4 and abs(e0 - e2) > 1e-4 and abs(e1 - e2) > 1e-4


@pytest.mark.parametrize("cutoff", [None, 4.0])
def test_translation_invariance(cutoff):
    model = make_model(cutoff)
    atoms = ethanol() if cutoff is None else water_box(2)
    ref = predict(model, atoms.numbers, atoms.positions, atoms.cell, atoms.pbc)
    shifted = atoms.positions + np.array([1.7, -3.2, 0.45])
    out = predict(model, atoms.numbers, shifted, atoms.cell, atoms.pbc)
    assert abs(out.energy - ref.energy) < 1e-9
    assert np.abs(out.forces - ref.forces).max() < 1e-9
    # Forces of an isolated molecule sum to zero (translation invariance of E).
    if cutoff is None:
        assert np.abs(ref.forces.sum(axis=0)).max() < 1e-10


@pytest.mark.parametrize("cutoff", [None, 4.0])
def test_permutation_equivariance(cutoff):
    model = make_model(cutoff)
    atoms = ethanol() if cutoff is None else water_box(2)
    perm = np.random.default_rng(5).permutation(len(atoms))
    ref = predict(model, atoms.numbers, atoms.positions, atoms.cell, atoms.pbc)
    out = predict(model, atoms.numbers[perm], atoms.positions[perm], atoms.cell, atoms.pbc)
    assert np.abs(out.energies - ref.energies[perm]).max() < 1e-9
    assert np.abs(out.forces - ref.forces[perm]).max() < 1e-9


#: Local-model options whose physics must hold like the plain model's (covalent-scaled radial inputs read other
#: distances in the splines but the plain distance in the envelope).
LOCAL_OPTIONS = pytest.mark.parametrize("options", [{}, {"covalent_scaled_radial": True}], ids=["plain", "covalent"])


@LOCAL_OPTIONS
def test_energy_continuous_across_cutoff(options):
    """Scan one atom through rc: energy and forces change smoothly, and beyond rc it is gone."""
    rc = 4.0
    model = make_model(rc, **options)
    base = Atoms("OHH", positions=[[0, 0, 0], [0.76, 0.59, 0], [0.76, -0.59, 0]])  # O is nearest to -x
    far = Atoms("C", positions=[[100.0, 0, 0]])
    e_far = predict(model, (base + far).numbers, (base + far).positions).energy
    step = 1e-3
    distances = rc + step * np.arange(-50, 51)
    energies, forces = [], []
    for d in distances:
        atoms = base + Atoms("C", positions=[[-d, 0.0, 0.0]])
        p = predict(model, atoms.numbers, atoms.positions)
        energies.append(p.energy)
        forces.append(p.forces[3, 0])
    energies, forces = np.array(energies), np.array(forces)
    # beyond rc the atom contributes exactly nothing to the others
    assert np.abs(energies[distances >= rc] - e_far).max() < 1e-10
    # smooth approach: the energy jump over one step near rc is far below a step change
    assert np.abs(np.diff(energies)).max() < 1e-7
    assert np.abs(np.diff(forces)).max() < 1e-5
    # the atom does interact inside the cutoff (test is not vacuous)
    inside = base + Atoms("C", positions=[[-(rc - 1.0), 0.0, 0.0]])
    assert abs(predict(model, inside.numbers, inside.positions).energy - e_far) > 1e-3


@LOCAL_OPTIONS
def test_strict_locality(options):
    """Atom i's energy depends only on atoms within rc of i, not on neighbours of neighbours."""
    rc = 4.0
    model = make_model(rc, **options)
    # A chain O ... C ... N with 3.5 Å links: C sees both, O and N see only C.
    atoms = Atoms("OCN", positions=[[0, 0, 0], [3.5, 0, 0], [7.0, 0, 0]])
    ref = predict(model, atoms.numbers, atoms.positions)
    moved = atoms.positions.copy()
    moved[2] = [6.8, 0.5, 0.3]  # N moves, still 3.3+ Å from C and > rc from O
    out = predict(model, atoms.numbers, moved)
    assert out.energies[0] == pytest.approx(ref.energies[0], rel=0, abs=1e-12)  # O cannot feel N through C
    assert abs(out.energies[1] - ref.energies[1]) > 1e-6  # C does feel it
    assert abs(out.energies[2] - ref.energies[2]) > 1e-6


def test_batched_structures_equal_separate():
    """Packing two molecules in one call gives each molecule's own energies (trainer batching)."""
    from transip_md.model.graph import all_pairs

    model = make_model(None)
    a, b = ethanol(), Atoms("OHH", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    ta, tb = all_pairs(len(a)), all_pairs(len(b), offset=len(a))
    pos = torch.tensor(np.vstack([a.positions, b.positions]))
    src = np.concatenate([ta.src, tb.src])
    dst = np.concatenate([ta.dst, tb.dst])
    out = model(
        torch.tensor(np.concatenate([a.numbers, b.numbers])),
        torch.tensor(np.stack([src, dst])),
        pos[dst] - pos[src],
        torch.tensor([0.0, 1.0], dtype=torch.float64),
        torch.tensor([1.0, 2.0], dtype=torch.float64),
        torch.tensor([0] * len(a) + [1] * len(b)),
    )
    ea = predict(model, a.numbers, a.positions, charge=0, multiplicity=1).energies
    eb = predict(model, b.numbers, b.positions, charge=1, multiplicity=2).energies
    assert np.abs(out.detach().numpy() - np.concatenate([ea, eb])).max() < 1e-10


def test_float32_close_to_float64():
    m64 = make_model(4.0)
    m32 = make_model(4.0, dtype="float32")
    m32.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in m64.state_dict().items()})
    atoms = water_box(2)
    p64 = predict(m64, atoms.numbers, atoms.positions, atoms.cell, atoms.pbc)
    p32 = predict(m32, atoms.numbers, atoms.positions, atoms.cell, atoms.pbc)
    assert abs(p64.energy - p32.energy) < 1e-3
    assert np.abs(p64.forces - p32.forces).max() < 1e-3


def test_centre_only_last_block_equals_full_block():
    """The local mode's shortcut (last block for the centre token only) changes no number."""
    model = make_model(4.0)
    atoms = water_box(2)
    from transip_md.model.graph import cutoff_pairs, edge_index, edge_vectors

    topo = cutoff_pairs(atoms.positions, atoms.cell, atoms.pbc, 4.0)
    vec = edge_vectors(torch.tensor(atoms.positions), torch.tensor(np.asarray(atoms.cell)), topo)
    elem = model.z_to_index[torch.tensor(atoms.numbers)]
    index = edge_index(topo)
    tok, pos, logw = model._local_sequences(elem, index[0], elem[index[1]], vec, len(atoms))
    natoms = torch.tensor([float(len(atoms))])
    cond = model._condition(torch.tensor([1.0]), torch.tensor([2.0]), natoms, torch.float64)
    cond = cond[torch.zeros(len(atoms), dtype=int)]
    full = model._encode(tok, pos, logw, cond, False)[:, 0]
    short = model._encode(tok, pos, logw, cond, True)[:, 0]
    assert torch.allclose(full, short, rtol=0, atol=1e-12)


def test_length_groups_change_no_number():
    """Local centres encoded in groups of similar neighbour count give the numbers of one padded batch: energies,
    forces, and the parameter gradient of a force loss (what training differentiates)."""
    from transip_md.model.graph import cutoff_pairs, edge_index, edge_vectors

    model = make_model(2.5)
    atoms = ethanol()
    topo = cutoff_pairs(atoms.positions, atoms.cell, atoms.pbc, 2.5)
    index = edge_index(topo)
    counts = torch.bincount(index[0], minlength=len(atoms))
    assert counts.min() < counts.max(), "the check needs neighbourhoods of different sizes"
    species = torch.tensor(atoms.numbers)
    state = (torch.tensor([1]), torch.tensor([2]), torch.zeros(len(atoms), dtype=torch.long))

    def energy_forces_and_loss_gradient():
        pos = torch.tensor(atoms.positions, requires_grad=True)
        vec = edge_vectors(pos, torch.tensor(np.asarray(atoms.cell)), topo)
        energy = model(species, index, vec, *state).sum()
        (grad,) = torch.autograd.grad(energy, pos, create_graph=True)
        params = [p for p in model.parameters() if p.requires_grad]
        loss_grad = torch.autograd.grad((grad**2).sum(), params, allow_unused=True)
        return [energy, grad] + [g for g in loss_grad if g is not None]

    model.max_length_groups = 1
    one_batch = energy_forces_and_loss_gradient()
    model.max_length_groups, model.group_cost_pairs = 4, 0
    assert len(model._length_groups(sorted(counts.tolist()))) == 5  # four groups really ran
    grouped = energy_forces_and_loss_gradient()
    assert len(grouped) == len(one_batch) > 10
    for a, b in zip(one_batch, grouped, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)


def test_length_groups_are_chosen_by_padded_pair_terms():
    """One group when neighbourhoods are alike or few; more when padding would waste more than a pass costs."""
    model = make_model(4.0)
    model.max_length_groups, model.group_cost_pairs = 4, 20000
    assert model._length_groups([30] * 200) == [0, 200]  # alike: grouping saves nothing
    assert model._length_groups([1] * 5 + [30] * 5) == [0, 10]  # 9,610 pair terms: less than one pass
    assert model._length_groups([5] * 100 + [40] * 100) == [0, 100, 200]  # 164,500 fewer pair terms for one more pass
    model.max_length_groups = 1
    assert model._length_groups([5] * 100 + [40] * 100) == [0, 200]


@pytest.mark.parametrize("cutoff", [None, 4.0])
def test_sdpa_kernel_gives_the_same_energies_and_forces(cutoff, tmp_path):
    from transip_md.model import export, load_compiled

    model = make_model(cutoff)
    atoms = ethanol() if cutoff is None else water_box(2)
    ref = predict(model, atoms.numbers, atoms.positions, atoms.cell, atoms.pbc)
    model.set_attention_kernel("sdpa")
    compiled = load_compiled(export(model, tmp_path / "sdpa.pt"))
    out = predict(compiled, atoms.numbers, atoms.positions, atoms.cell, atoms.pbc)
    assert abs(out.energy - ref.energy) < 1e-9
    assert np.abs(out.forces - ref.forces).max() < 1e-9


def test_spline_radial_bias_is_smooth_and_flat_beyond_its_range():
    """Value, slope and curvature of the radial bias are continuous at knots and at r_max (C2)."""
    from transip_md.model.layers import SplineRadialBias

    torch.manual_seed(1)
    spline = SplineRadialBias(n_knots=12, r_max=5.0, n_heads=3).double()
    h = 5.0 / 11
    points = torch.tensor([h * 3, h * 7, 5.0], dtype=torch.float64)  # two interior knots and r_max

    def value_slope_curvature(r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per point and head: b(r), b'(r), b''(r) (each output depends on its own r only)."""
        r = r.clone().requires_grad_(True)
        f = spline(r)
        slopes, curvatures = [], []
        for k in range(f.shape[1]):
            (g,) = torch.autograd.grad(f[:, k].sum(), r, create_graph=True)
            (c,) = torch.autograd.grad(g.sum(), r, retain_graph=True)
            slopes.append(g.detach())
            curvatures.append(c)
        return f.detach(), torch.stack(slopes, 1), torch.stack(curvatures, 1)

    eps = 1e-5
    fl, gl, cl = value_slope_curvature(points - eps)
    fr, gr, cr = value_slope_curvature(points + eps)
    scale = 1.0 + cl.abs().max()
    assert torch.allclose(fl, fr, atol=1e-4)
    assert torch.allclose(gl, gr, atol=1e-3 * scale)
    assert torch.allclose(cl, cr, atol=1e-2 * scale)
    assert gl.abs().max() > 1e-3  # not vacuously flat
    far = spline(torch.tensor([5.0, 6.0, 40.0], dtype=torch.float64))
    assert torch.allclose(far[0], far[1]) and torch.allclose(far[1], far[2])


@LOCAL_OPTIONS
def test_chunked_inference_equals_one_pass(options, tmp_path):
    """energy_and_gradient in chunks of centres (the engines' path) gives the one-pass numbers."""
    from transip_md.model import export, load_compiled

    model = make_model(4.0, **options)
    compiled = load_compiled(export(model, tmp_path / "m.pt"))
    atoms = water_box(3)
    ref = predict(model, atoms.numbers, atoms.positions, atoms.cell, atoms.pbc, 1, 2, virial=True, chunk_size=0)
    for m in (model, compiled):
        for chunk in (7, 32, 80):
            out = predict(m, atoms.numbers, atoms.positions, atoms.cell, atoms.pbc, 1, 2, virial=True, chunk_size=chunk)
            assert np.abs(out.energies - ref.energies).max() < 1e-10
            assert np.abs(out.forces - ref.forces).max() < 1e-10
            assert np.abs(out.virial - ref.virial).max() < 1e-9


def test_spline_radial_bias_equals_the_b_spline_sum_and_its_coefficient_gradient():
    """b_h(r) = sum_k c_kh B3(x - k + 3), x = r / spacing (uniform cubic B-spline, the last coefficient repeated
    beyond the table); the gradient with respect to the coefficients is the basis (many distances share rows)."""
    from transip_md.model.layers import SplineRadialBias

    def b3(t: np.ndarray) -> np.ndarray:
        """The uniform cubic B-spline on [0, 4)."""
        t = np.asarray(t, dtype=float)
        return np.where(
            (t >= 0) & (t < 1), t**3 / 6,
            np.where((t >= 1) & (t < 2), (-3 * t**3 + 12 * t**2 - 12 * t + 4) / 6,
            np.where((t >= 2) & (t < 3), (3 * t**3 - 24 * t**2 + 60 * t - 44) / 6,
            np.where((t >= 3) & (t < 4), (4 - t) ** 3 / 6, 0.0))),
        )  # fmt: skip

    torch.manual_seed(3)
    n_knots, r_max, heads = 9, 4.0, 2
    spline = SplineRadialBias(n_knots=n_knots, r_max=r_max, n_heads=heads).double()
    dist = torch.rand(3, 5, 5, dtype=torch.float64) * 5.0  # some beyond r_max
    out = spline(dist)
    assert out.shape == (3, 5, 5, heads)
    table = torch.cat([spline.coefficients, spline.coefficients[-1:].expand(3, -1)]).detach().numpy()
    x = np.minimum(dist.numpy() * (n_knots - 1) / r_max, n_knots - 1.0)
    basis = np.stack([b3(x - k + 3) for k in range(n_knots + 3)], axis=-1)  # row k of the table, per distance
    expected = basis @ table
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(out)
    (grad,) = torch.autograd.grad((out * weights).sum(), spline.coefficients)
    full = np.einsum("abck,abch->kh", basis, weights.numpy())
    full[n_knots - 1] += full[n_knots:].sum(0)  # the three repeated rows are the last coefficient
    np.testing.assert_allclose(grad.numpy(), full[:n_knots], rtol=1e-10, atol=1e-12)
