"""TransIPForce against the ASE calculator, the TorchScript ('torch' backend) module's maths, serialization,
input errors. Random-weight float64 models keep it fast and make agreement a float-rounding question."""

from __future__ import annotations

import numpy as np
import openmm
import openmm.app
import pytest
import torch
from ase import Atoms
from conftest import ETHANOL_A, ETHANOL_Z
from openmm import unit

from transip_md.ase import TransIPCalculator
from transip_md.model import TransIPConfig, export, load_compiled, random_model
from transip_md.openmm import SerializationError, TransIPForce, check_serializable, load_model, serialize_system
from transip_md.openmm.torch_module import DEFAULT_BLOCK_ROWS, build_torch_module
from transip_md.units import ANGSTROM_TO_NM, EV_PER_A_TO_KJ_PER_MOL_NM, EV_TO_KJ_PER_MOL
from transip_md.validation import InputError

KJ = unit.kilojoule_per_mole
# OpenMM reduced-form triclinic box (rows a, b, c in Å): a along x, b in xy, |b_x|,|c_x| <= a_x/2, |c_y| <= b_y/2.
TRICLINIC_A = np.array([[9.0, 0.0, 0.0], [2.5, 8.6, 0.0], [-3.0, 2.9, 8.8]])
ORTHO_A = np.diag([8.4, 9.1, 8.7])
# Float64 agreement of one model evaluated two ways: rounding only (energies of order 1-100 kJ/mol).
E_TOL_KJ = 1e-8
F_TOL_KJ_NM = 1e-7


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("openmm-models")
    small = dict(d_model=32, n_heads=2, n_layers=2, elements=[1, 6, 7, 8], dtype="float64")
    paths = {
        "global": export(random_model(TransIPConfig(cutoff=None, **small), seed=1), d / "global.pt"),
        "local": export(random_model(TransIPConfig(cutoff=3.5, **small), seed=2), d / "local.pt"),
        "spread": export(
            random_model(TransIPConfig(cutoff=3.5, learned_charge_spread=True, **small), seed=4), d / "spread.pt"
        ),
        "local32": export(
            random_model(TransIPConfig(cutoff=3.5, **{**small, "dtype": "float32"}), seed=3), d / "local32.pt"
        ),
    }
    return {k: str(v) for k, v in paths.items()}


def random_box_atoms(cell_a: np.ndarray, n: int, seed: int) -> tuple[list[int], np.ndarray]:
    """n atoms of H/C/N/O at random fractional positions, kept 0.9 Å apart (minimum image)."""
    rng = np.random.default_rng(seed)
    frac: list[np.ndarray] = []
    while len(frac) < n:
        f = rng.uniform(0, 1, 3)
        ok = True
        for g in frac:
            d = f - g
            d -= np.round(d)
            if np.linalg.norm(d @ cell_a) < 0.9:
                ok = False
                break
        if ok:
            frac.append(f)
    numbers = rng.choice([1, 6, 7, 8], size=n).tolist()
    if sum(numbers) % 2:  # an even electron count for charge 0 / singlet
        numbers[0] = {1: 6, 6: 7, 7: 6, 8: 7}[numbers[0]]
    return numbers, np.array(frac) @ cell_a


def make_system(numbers, cell_a=None) -> openmm.System:
    system = openmm.System()
    for z in numbers:
        system.addParticle(openmm.app.Element.getByAtomicNumber(int(z)).mass)
    if cell_a is not None:
        system.setDefaultPeriodicBoxVectors(*[openmm.Vec3(*row) * ANGSTROM_TO_NM for row in cell_a])
    return system


def openmm_eval(system, pos_a, platform="Reference", cell_a=None):
    props = {"Threads": "1"} if platform == "CPU" else {}
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.0005), openmm.Platform.getPlatformByName(platform), props)
    if cell_a is not None:
        ctx.setPeriodicBoxVectors(*[openmm.Vec3(*row) * ANGSTROM_TO_NM for row in cell_a])
    ctx.setPositions(pos_a * ANGSTROM_TO_NM)
    st = ctx.getState(getEnergy=True, getForces=True)
    e = st.getPotentialEnergy().value_in_unit(KJ)
    f = st.getForces(asNumpy=True).value_in_unit(KJ / unit.nanometer)
    return e, np.asarray(f)


def ase_eval(path, numbers, pos_a, cell_a=None, charge=0, spin=1):
    atoms = Atoms(numbers=numbers, positions=pos_a, cell=cell_a, pbc=cell_a is not None)
    atoms.info.update(charge=charge, spin=spin)
    atoms.calc = TransIPCalculator(path)
    return atoms.get_potential_energy() * EV_TO_KJ_PER_MOL, atoms.get_forces() * EV_PER_A_TO_KJ_PER_MOL_NM


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
def test_molecule_global_model_matches_ase(models, platform):
    system = make_system(ETHANOL_Z)
    system.addForce(
        TransIPForce(models["global"], atomic_numbers=ETHANOL_Z, backend="python", charge=1, multiplicity=2)
    )
    e, f = openmm_eval(system, ETHANOL_A, platform)
    e_ref, f_ref = ase_eval(models["global"], ETHANOL_Z, ETHANOL_A, charge=1, spin=2)
    assert abs(e - e_ref) < E_TOL_KJ
    np.testing.assert_allclose(f, f_ref, atol=F_TOL_KJ_NM, rtol=0)
    assert np.abs(f_ref).max() > 1.0  # a non-trivial force field was compared


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
@pytest.mark.parametrize("cell", [ORTHO_A, TRICLINIC_A], ids=["orthorhombic", "triclinic"])
def test_periodic_local_model_matches_ase(models, platform, cell):
    numbers, pos = random_box_atoms(cell, 24, seed=4)
    pos = pos + np.array([0.3, -0.2, 0.5]) * 8  # partly outside the cell: OpenMM and ASE must wrap alike
    system = make_system(numbers, cell)
    system.addForce(
        TransIPForce(models["local"], atomic_numbers=numbers, system=system, periodic=True, backend="python")
    )
    assert system.usesPeriodicBoundaryConditions()
    e, f = openmm_eval(system, pos, platform, cell)
    e_ref, f_ref = ase_eval(models["local"], numbers, pos, cell)
    assert abs(e - e_ref) < E_TOL_KJ
    np.testing.assert_allclose(f, f_ref, atol=F_TOL_KJ_NM, rtol=0)


def test_small_box_python_backend_sees_all_images_torch_module_refuses(models):
    """A 5 Å box with a 3.5 Å cutoff holds several images of a neighbour: the python backend (vesin
    neighbour list) takes them all, as ASE does; the generated torch module refuses the box."""
    cell = np.diag([5.0, 5.2, 5.4])
    numbers, pos = random_box_atoms(cell, 4, seed=5)
    system = make_system(numbers, cell)
    system.addForce(
        TransIPForce(models["local"], atomic_numbers=numbers, system=system, periodic=True, backend="python")
    )
    e, f = openmm_eval(system, pos, "Reference", cell)
    e_ref, f_ref = ase_eval(models["local"], numbers, pos, cell)
    assert abs(e - e_ref) < E_TOL_KJ
    np.testing.assert_allclose(f, f_ref, atol=F_TOL_KJ_NM, rtol=0)
    module = build_torch_module(load_compiled(models["local"]).module, numbers, 4, None, 3.5, True, 0, 1, torch.float64)
    with pytest.raises((RuntimeError, torch.jit.Error), match="too small"):
        module(torch.tensor(pos * ANGSTROM_TO_NM), torch.tensor(cell * ANGSTROM_TO_NM))


# ----------------------------------------------------------------- the 'torch' backend's module, called directly
def torch_module_eval(
    path, numbers, pos_a, cell_a, n_particles=None, indices=None, dtype=torch.float64, charge=0, multiplicity=1
):
    model = load_compiled(path)
    module = build_torch_module(
        model.module,
        numbers,
        n_particles or len(numbers),
        indices,
        model.cutoff,
        cell_a is not None,
        charge,
        multiplicity,
        dtype,
    )
    pos = torch.tensor(pos_a * ANGSTROM_TO_NM, dtype=dtype)  # nm, as OpenMM passes them
    box = None if cell_a is None else torch.tensor(cell_a * ANGSTROM_TO_NM, dtype=dtype)
    energy, forces = module(pos, box)
    assert energy.dtype == torch.float64 and energy.dim() == 0
    assert forces.dtype == dtype and forces.shape == pos.shape
    return float(energy), forces.detach().to(torch.float64).numpy()


def test_torch_module_molecule_matches_python_backend(models):
    e_t, f_t = torch_module_eval(models["global"], ETHANOL_Z, ETHANOL_A, None)
    system = make_system(ETHANOL_Z)
    system.addForce(TransIPForce(models["global"], atomic_numbers=ETHANOL_Z, backend="python"))
    e_p, f_p = openmm_eval(system, ETHANOL_A)
    assert abs(e_t - e_p) < E_TOL_KJ
    np.testing.assert_allclose(f_t, f_p, atol=F_TOL_KJ_NM, rtol=0)


@pytest.mark.parametrize("cell", [ORTHO_A, TRICLINIC_A], ids=["orthorhombic", "triclinic"])
def test_torch_module_periodic_matches_ase(models, cell):
    numbers, pos = random_box_atoms(cell, 24, seed=6)
    pos = pos - np.array([0.6, 0.1, -0.9]) * 9  # far outside the reduced cell
    e_t, f_t = torch_module_eval(models["local"], numbers, pos, cell)
    e_ref, f_ref = ase_eval(models["local"], numbers, pos, cell)
    assert abs(e_t - e_ref) < E_TOL_KJ
    np.testing.assert_allclose(f_t, f_ref, atol=F_TOL_KJ_NM, rtol=0)


def test_learned_spread_charged_box_matches_ase_in_both_backends(models):
    """A random uneven learned charge/spin spread, charged doublet, periodic: the PythonForce and the TorchForce
    module both give ASE's energy and forces (each computes the spread's weight sum over the whole system)."""
    numbers, pos = random_box_atoms(ORTHO_A, 24, seed=7)
    charge = 1 if sum(numbers) % 2 == 0 else 0
    e_ref, f_ref = ase_eval(models["spread"], numbers, pos, ORTHO_A, charge=charge, spin=2)
    e_even, _ = ase_eval(models["local"], numbers, pos, ORTHO_A, charge=charge, spin=2)
    system = make_system(numbers, ORTHO_A)
    system.addForce(
        TransIPForce(
            models["spread"], atomic_numbers=numbers, system=system, periodic=True, backend="python", charge=charge,
            multiplicity=2,
        )
    )  # fmt: skip
    e_p, f_p = openmm_eval(system, pos, "Reference", ORTHO_A)
    e_t, f_t = torch_module_eval(models["spread"], numbers, pos, ORTHO_A, charge=charge, multiplicity=2)
    for e, f in [(e_p, f_p), (e_t, f_t)]:
        assert abs(e - e_ref) < E_TOL_KJ
        np.testing.assert_allclose(f, f_ref, atol=F_TOL_KJ_NM, rtol=0)
    assert abs(e_ref - e_even) > 1.0  # another model: the comparison is not of a trivial energy


def test_torch_module_subset_and_float32(models):
    """ML atoms scattered in a larger System (ML/MM layout): zero force rows elsewhere; float32 positions
    (OpenMM single precision) agree with float64 to float32 rounding."""
    cell = TRICLINIC_A
    numbers, pos = random_box_atoms(cell, 20, seed=7)
    n_total = 31
    indices = [3, 30, 7, 12, 0, 25, 18, 4, 9, 11, 20, 22, 1, 27, 15, 16, 28, 5, 14, 26]
    full = np.random.default_rng(8).uniform(0, 8, (n_total, 3))
    full[indices] = pos
    e_sub, f_sub = torch_module_eval(models["local"], numbers, full, cell, n_total, indices)
    e_ref, f_ref = ase_eval(models["local"], numbers, pos, cell)
    assert abs(e_sub - e_ref) < E_TOL_KJ
    np.testing.assert_allclose(f_sub[indices], f_ref, atol=F_TOL_KJ_NM, rtol=0)
    others = sorted(set(range(n_total)) - set(indices))
    assert np.all(f_sub[others] == 0.0)
    e32, f32 = torch_module_eval(models["local32"], numbers, full, cell, n_total, indices, torch.float32)
    e64, f64 = ase_eval(models["local32"], numbers, pos, cell)
    assert abs(e32 - e64) < 1e-4 * max(1.0, abs(e64))
    np.testing.assert_allclose(f32[indices], f64, atol=1e-3 * max(1.0, np.abs(f64).max()), rtol=0)


def test_python_backend_subset_in_larger_system(models):
    numbers, pos = list(ETHANOL_Z), ETHANOL_A
    n_total = 14
    atoms = [2, 5, 6, 7, 9, 10, 11, 12, 13]
    full = np.random.default_rng(9).uniform(10, 20, (n_total, 3))
    full[atoms] = pos
    system = make_system([1] * n_total)
    system.addForce(
        TransIPForce(models["global"], atoms=atoms, atomic_numbers=numbers, system=system, backend="python")
    )
    e, f = openmm_eval(system, full)
    e_ref, f_ref = ase_eval(models["global"], numbers, pos)
    assert abs(e - e_ref) < E_TOL_KJ
    np.testing.assert_allclose(f[atoms], f_ref, atol=F_TOL_KJ_NM, rtol=0)
    assert np.all(f[[0, 1, 3, 4, 8]] == 0.0)


def test_force_group_and_model_reuse(models):
    f1 = TransIPForce(models["global"], atomic_numbers=ETHANOL_Z, backend="python", force_group=5)
    assert f1.getForceGroup() == 5
    assert load_model(models["global"]) is load_model(models["global"])  # one load per file/device/dtype
    system = make_system(ETHANOL_Z)
    system.addForce(f1)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(ETHANOL_A * ANGSTROM_TO_NM)
    e5 = ctx.getState(getEnergy=True, groups={5}).getPotentialEnergy().value_in_unit(KJ)
    e0 = ctx.getState(getEnergy=True, groups={0}).getPotentialEnergy().value_in_unit(KJ)
    assert e0 == 0.0 and e5 != 0.0


def test_precision_single_casts_model(models):
    system = make_system(ETHANOL_Z)
    system.addForce(TransIPForce(models["global"], atomic_numbers=ETHANOL_Z, backend="python", precision="single"))
    e32, f32 = openmm_eval(system, ETHANOL_A)
    e_ref, f_ref = ase_eval(models["global"], ETHANOL_Z, ETHANOL_A)
    assert abs(e32 - e_ref) < 1e-4 * max(1.0, abs(e_ref))
    assert abs(e32 - e_ref) > 0.0  # it really ran in float32
    np.testing.assert_allclose(f32, f_ref, atol=1e-3 * np.abs(f_ref).max(), rtol=0)


# ----------------------------------------------------------------- serialization
def test_python_backend_xml_round_trip(models):
    """A PythonForce serializes (its callback is pickled: model path + settings, not the weights)."""
    cell = ORTHO_A
    numbers, pos = random_box_atoms(cell, 12, seed=10)
    system = make_system(numbers, cell)
    system.addForce(
        TransIPForce(models["local"], atomic_numbers=numbers, system=system, periodic=True, backend="python")
    )
    xml = serialize_system(system)
    assert "PythonForce" in xml
    clone = openmm.XmlSerializer.deserialize(xml)
    assert clone.getForce(0).usesPeriodicBoundaryConditions()
    e1, f1 = openmm_eval(system, pos, "Reference", cell)
    e2, f2 = openmm_eval(clone, pos, "Reference", cell)
    assert e1 == pytest.approx(e2, rel=1e-14, abs=1e-12)  # the same model file and positions
    np.testing.assert_allclose(f1, f2, rtol=1e-14, atol=1e-12)


def test_check_serializable_names_the_torch_backend():
    class TorchForce(openmm.CustomExternalForce):  # stands in for openmmtorch.TorchForce (same class name)
        pass

    system = make_system([1, 1])
    system.addForce(openmm.CustomExternalForce("x"))
    check_serializable(system)  # no TorchForce: fine
    fake = TorchForce("x")
    fake.setName("TransIP (torch)")

    class FakeSystem:
        def getForces(self):
            return [fake]

    with pytest.raises(SerializationError, match="backend='torch'"):
        check_serializable(FakeSystem())


# ----------------------------------------------------------------- bad input
def test_bad_input_errors(models):
    g = models["global"]
    with pytest.raises(InputError, match="atomic numbers given"):
        TransIPForce(g, atomic_numbers=ETHANOL_Z[:-1], system=make_system(ETHANOL_Z), backend="python")
    with pytest.raises(InputError, match="outside the System"):
        TransIPForce(g, atoms=[0, 1, 99], atomic_numbers=[6, 6, 8], system=make_system(ETHANOL_Z), backend="python")
    with pytest.raises(InputError, match="repeated"):
        TransIPForce(g, atoms=[0, 0], atomic_numbers=[1, 1], backend="python")
    with pytest.raises(InputError, match="not supported by the model"):
        TransIPForce(g, atomic_numbers=[6, 17, 1, 1, 1, 1], backend="python")
    with pytest.raises(InputError, match="impossible charge/spin"):
        TransIPForce(g, atomic_numbers=ETHANOL_Z, multiplicity=2, backend="python")
    with pytest.raises(InputError, match="elements"):
        TransIPForce(g, backend="python")
    box_top = openmm.app.Topology()
    res = box_top.addResidue("MOL", box_top.addChain())
    for z in ETHANOL_Z:
        box_top.addAtom("X", openmm.app.Element.getByAtomicNumber(z), res)
    box_top.setPeriodicBoxVectors([openmm.Vec3(*row) * ANGSTROM_TO_NM for row in ORTHO_A])
    with pytest.raises(InputError, match="global .all-pairs. model cannot run a periodic system"):
        TransIPForce(g, topology=box_top, backend="python")
    with pytest.raises(InputError, match="global .all-pairs. model cannot run a periodic system"):
        TransIPForce(g, atomic_numbers=ETHANOL_Z, periodic=True, backend="python")
    with pytest.raises(ValueError, match="backend must be"):
        TransIPForce(g, atomic_numbers=ETHANOL_Z, backend="jax")
    from transip_md.openmm.force import openmmtorch_available

    if not openmmtorch_available():  # the main venv (torch 2.13): no openmm-torch build exists
        with pytest.raises(ImportError, match="openmm-torch"):
            TransIPForce(g, atomic_numbers=ETHANOL_Z, backend="torch")


def test_topology_without_elements_and_bad_model_file(tmp_path, models):
    top = openmm.app.Topology()
    res = top.addResidue("X", top.addChain())
    top.addAtom("V", None, res)
    with pytest.raises(InputError, match="no element"):
        TransIPForce(models["global"], topology=top, backend="python")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    from transip_md.model import ModelFileError

    with pytest.raises(ModelFileError):
        TransIPForce(bad, atomic_numbers=[1, 1], backend="python")


def test_torch_backend_box_check_at_construction(models, monkeypatch):
    """The torch backend refuses a box below 2 x cutoff before building anything (python backend accepts)."""
    from transip_md.openmm import force as force_mod

    monkeypatch.setattr(force_mod, "openmmtorch_available", lambda: True)
    system = make_system([1, 1], np.diag([6.0, 6.0, 6.0]))
    with pytest.raises(InputError, match="box too small for the torch backend"):
        TransIPForce(models["local"], atomic_numbers=[1, 1], system=system, periodic=True, backend="torch")


# ----------------------------------------------------------------- the torch module's Verlet list
def brute_force_pairs(pos_a: np.ndarray, cell_a: np.ndarray | None, cutoff_a: float) -> set[tuple[int, int]]:
    """Pairs i < j closer than cutoff_a (Å), nearest of the 27 images in a periodic cell (independent of the
    module's reduced-form brick algorithm; valid when the cell is wider than 2 x cutoff_a)."""
    shifts = np.zeros((1, 3))
    if cell_a is not None:
        grid = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=float)
        shifts = grid @ cell_a
    d = pos_a[None, :, None, :] - pos_a[:, None, None, :] + shifts[None, None]
    dist = np.linalg.norm(d, axis=-1).min(-1)
    i, j = np.nonzero(np.triu(dist < cutoff_a, k=1))
    return set(zip(i.tolist(), j.tolist(), strict=True))


@pytest.mark.parametrize("cell", [TRICLINIC_A * 2.3, None], ids=["triclinic", "open"])
@pytest.mark.parametrize("block_rows", [DEFAULT_BLOCK_ROWS, 7])
def test_blocked_pair_build_matches_brute_force(models, cell, block_rows):
    """The rebuild scans block_rows rows at a time: 300 atoms span several blocks (the last one partial)."""
    from transip_md.openmm.force import perpendicular_widths

    assert 300 > 2 * block_rows and 299 % block_rows != 0

    box_cell = TRICLINIC_A * 2.3
    numbers, pos = random_box_atoms(box_cell, 300, seed=11)
    pos = pos + np.array([0.4, -1.3, 0.7]) * 10  # outside the reduced cell
    module = build_torch_module(
        load_compiled(models["local"]).module,
        numbers,
        len(numbers),
        None,
        3.5,
        cell is not None,
        0,
        1,
        torch.float64,
        block_rows=block_rows,
    )
    list_cutoff = 4.5
    assert cell is None or perpendicular_widths(cell).min() > 2 * list_cutoff
    box = None if cell is None else torch.tensor(cell * ANGSTROM_TO_NM)
    pi, pj = module._build_pairs(torch.tensor(pos * ANGSTROM_TO_NM), box, list_cutoff * ANGSTROM_TO_NM)
    got = list(zip(pi.tolist(), pj.tolist(), strict=True))
    assert got == sorted(got)  # row-major, i < j: the order of the former full upper-triangle scan
    expected = brute_force_pairs(pos, cell, list_cutoff)
    assert len(expected) > 1000  # a dense enough box for the blocks to matter
    assert set(got) == expected and len(got) == len(expected)


def _verlet_module(path, numbers, cell, skin):
    model = load_compiled(path)
    return build_torch_module(
        model.module, numbers, len(numbers), None, model.cutoff, cell is not None, 0, 1, torch.float64, skin=skin
    )


@pytest.mark.parametrize("cell", [TRICLINIC_A * 1.3, None], ids=["triclinic", "open"])
def test_verlet_list_reuse_is_exact(models, cell):
    """Energies and forces with a 1 Å skin equal those of a module that searches every call (skin 0) through
    small moves (list reused; one pair crosses the cutoff meanwhile), a move beyond skin/2, a box change and
    an atom wrapped by a box vector (each a rebuild); the counters show which calls reused the list."""
    box_cell = TRICLINIC_A * 1.3  # widths ~11 Å: half width - cutoff > skin, the full skin is used
    numbers, pos0 = random_box_atoms(box_cell, 40, seed=12)
    cutoff = 3.5
    rng = np.random.default_rng(13)
    # a pair just outside cutoff + 0.1 Å that the small moves bring inside the cutoff while the list is reused
    dist = {p: np.linalg.norm(pos0[p[1]] - pos0[p[0]]) for p in brute_force_pairs(pos0, None, 9.0)}
    a, b = min((p for p in dist if dist[p] > cutoff + 0.1), key=lambda p: dist[p])
    assert dist[(a, b)] < cutoff + 0.3
    unit_ab = (pos0[b] - pos0[a]) / dist[(a, b)]

    def small_moves(k):  # cumulative displacement of every atom < 0.45 Å (skin/2 less the module's margin)
        step = rng.uniform(-1, 1, pos0.shape)
        step *= 0.04 / np.linalg.norm(step, axis=1, keepdims=True)
        move = k * step
        move[a] = k * 0.13 * unit_ab
        move[b] = -k * 0.13 * unit_ab
        return move

    configs = [("build", pos0, cell)]
    configs += [("reuse", pos0 + small_moves(k), cell) for k in (1, 2, 3)]
    assert np.linalg.norm(configs[-1][1][b] - configs[-1][1][a]) < cutoff - 0.2  # the pair crossed the cutoff
    big = configs[-1][1].copy()
    big[5] += np.array([0.6, -0.6, 0.52])  # 1 Å more: > 0.49 x skin from the list's positions (moved <= 0.39 Å)
    configs.append(("build", big, cell))
    configs.append(("reuse", big, cell))  # unchanged
    if cell is not None:
        configs.append(("build", big, cell * 1.002))  # a barostat's box change
        configs.append(("reuse", big, cell * 1.002))
        wrapped = big.copy()
        wrapped[9] -= cell[1]  # an atom wrapped by a box vector: same physics, a rebuild
        configs.append(("build", wrapped, cell * 1.002))
    pairs_seen = set()
    with_skin = _verlet_module(models["local"], numbers, cell, skin=1.0)
    fresh = _verlet_module(models["local"], numbers, cell, skin=0.0)
    for step, (expect, pos, c) in enumerate(configs):
        builds, reuses = with_skin.n_builds, with_skin.n_reuses
        pos_t = torch.tensor(pos * ANGSTROM_TO_NM)
        box_t = None if c is None else torch.tensor(c * ANGSTROM_TO_NM)
        e1, f1 = with_skin(pos_t, box_t)
        e0, f0 = fresh(pos_t, box_t)
        assert abs(float(e1) - float(e0)) <= 1e-12 * abs(float(e0)), step
        scale = float(f0.abs().max())
        assert scale > 1.0
        assert float((f1 - f0).abs().max()) <= 1e-12 * scale, step
        if expect == "build":
            assert (with_skin.n_builds, with_skin.n_reuses) == (builds + 1, reuses), step
        else:
            assert (with_skin.n_builds, with_skin.n_reuses) == (builds, reuses + 1), step
        pairs_seen.add(frozenset(brute_force_pairs(pos, c, cutoff)))
    assert len(pairs_seen) > 2  # the neighbour set really changed along the sequence
    assert fresh.n_reuses == 0 and fresh.n_builds == len(configs)


def test_verlet_skin_is_clipped_in_narrow_boxes_and_global_pairs_are_built_once(models):
    """In a box whose half width leaves less than the skin beyond the cutoff, the list uses the remainder
    (the minimum image is exact only up to half the width); a global model builds its all-pairs list once."""
    from transip_md.openmm.force import perpendicular_widths

    numbers, pos = random_box_atoms(TRICLINIC_A, 24, seed=14)
    module = _verlet_module(models["local"], numbers, TRICLINIC_A, skin=2.0)
    module(torch.tensor(pos * ANGSTROM_TO_NM), torch.tensor(TRICLINIC_A * ANGSTROM_TO_NM))
    usable = perpendicular_widths(TRICLINIC_A).min() / 2 - 3.5  # Å, below the 2 Å skin asked for
    assert 0 < usable < 2.0
    assert module.reuse_limit_sq == pytest.approx((0.49 * usable * ANGSTROM_TO_NM) ** 2, rel=1e-12)
    glob = _verlet_module(models["global"], ETHANOL_Z, None, skin=1.0)
    for k in range(3):
        e, _ = glob(torch.tensor((ETHANOL_A + 0.5 * k) * ANGSTROM_TO_NM))  # any move: all pairs stay all pairs
    assert (glob.n_builds, glob.n_reuses) == (1, 2)
    assert glob.pair_i.numel() == len(ETHANOL_Z) * (len(ETHANOL_Z) - 1) // 2
    with pytest.raises(ValueError, match="skin"):
        _verlet_module(models["local"], numbers, TRICLINIC_A, skin=-0.1)


def test_skin_reaches_the_torch_module_and_is_validated(models, monkeypatch):
    """TransIPForce(skin_angstrom=...) builds the torch backend's module with that skin (a stand-in TorchForce
    records the module: the main venv has no openm-torch) and refuses a negative or non-finite skin."""
    from transip_md.openmm import force as force_mod

    made = []

    class FakeTorchForce:
        def __init__(self, module):
            made.append(module)

        def __getattr__(self, name):  # setOutputsForces, setName, ...: accepted and ignored
            return lambda *args: None

    class FakeOpenMMTorch:
        TorchForce = FakeTorchForce

    monkeypatch.setattr(force_mod, "openmmtorch_available", lambda: True)
    monkeypatch.setattr(force_mod, "_openmmtorch", lambda: FakeOpenMMTorch)
    system = make_system(ETHANOL_Z, ORTHO_A * 1.3)
    for skin in (0.0, 0.7):
        TransIPForce(models["local"], atomic_numbers=ETHANOL_Z, system=system, backend="torch", skin_angstrom=skin)
        assert made[-1].skin_nm == pytest.approx(skin * ANGSTROM_TO_NM, rel=1e-15)
    TransIPForce(models["local"], atomic_numbers=ETHANOL_Z, system=system, backend="torch")
    assert made[-1].skin_nm == pytest.approx(0.1, rel=1e-15)  # the documented 1 Å default
    for bad in (-0.5, float("nan"), float("inf"), "wide"):
        with pytest.raises(ValueError, match="skin_angstrom"):
            TransIPForce(models["local"], atomic_numbers=ETHANOL_Z, system=system, backend="python", skin_angstrom=bad)
