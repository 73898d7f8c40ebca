"""TransIPForce(backend='torch') for real: openmm-torch's TorchForce in build/openmmtorch-venv (torch 2.12).

Run by tests/test_openmm_torchforce_tier.py from the main venv (named tier_*.py so that the main venv's
pytest, which has no openmm-torch, never collects it):
    build/openmmtorch-venv/bin/python -m pytest -q tests/openmmtorch_tier/tier_torchforce.py
The model files are exported by this venv's torch from random weights; the main-venv test additionally
passes a file written by torch 2.13 (TRANSIP_TORCH213_MODEL) to prove the compiled format loads here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import pytest
import torch
from openmmml import MLPotential

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import openmmtorch  # noqa: E402
from test_openmm_force import (  # noqa: E402
    ETHANOL_A,
    ETHANOL_Z,
    TRICLINIC_A,
    ase_eval,
    make_system,
    openmm_eval,
    random_box_atoms,
)
from test_openmm_mlpotential import build, energy, ml_reference, mm_system  # noqa: E402

from transip_md.model import TransIPConfig, export, random_model  # noqa: E402
from transip_md.openmm import SerializationError, TransIPForce, serialize_system  # noqa: E402
from transip_md.units import ANGSTROM_TO_NM  # noqa: E402

E_TOL = 1e-8
F_TOL = 1e-7


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("tier")
    small = dict(d_model=32, n_heads=2, n_layers=2, elements=[1, 6, 7, 8], dtype="float64")
    out = {
        "global": str(export(random_model(TransIPConfig(cutoff=None, **small), seed=1), d / "g.pt")),
        "local": str(export(random_model(TransIPConfig(cutoff=3.5, **small), seed=2), d / "l.pt")),
        "spread": str(
            export(random_model(TransIPConfig(cutoff=3.5, learned_charge_spread=True, **small), seed=3), d / "s.pt")
        ),
    }
    if os.environ.get("TRANSIP_TORCH213_MODEL"):
        out["torch213"] = os.environ["TRANSIP_TORCH213_MODEL"]
    if os.environ.get("TRANSIP_TORCH213_SPREAD_MODEL"):
        out["spread213"] = os.environ["TRANSIP_TORCH213_SPREAD_MODEL"]
    return out


def test_environment(models):
    assert torch.__version__.startswith("2.12"), torch.__version__
    assert hasattr(openmmtorch, "TorchForce")
    force = TransIPForce(models["global"], atomic_numbers=[1, 1])  # 'auto': torch where openmmtorch imports
    assert isinstance(force, openmmtorch.TorchForce)
    assert force.getOutputsForces()


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
@pytest.mark.parametrize("which", ["global", "torch213"])
def test_molecule_torch_vs_python_vs_ase(models, platform, which):
    if which not in models:
        pytest.fail("TRANSIP_TORCH213_MODEL (a model file written by the main venv's torch 2.13) was not given")
    path = models[which]
    results = {}
    for backend in ("torch", "python"):
        system = make_system(ETHANOL_Z)
        system.addForce(TransIPForce(path, atomic_numbers=ETHANOL_Z, backend=backend, charge=1, multiplicity=2))
        results[backend] = openmm_eval(system, ETHANOL_A, platform)
    e_ref, f_ref = ase_eval(path, ETHANOL_Z, ETHANOL_A, charge=1, spin=2)
    for e, f in results.values():
        assert abs(e - e_ref) < E_TOL
        np.testing.assert_allclose(f, f_ref, atol=F_TOL, rtol=0)


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
def test_triclinic_box_torch_vs_python_vs_ase(models, platform):
    numbers, pos = random_box_atoms(TRICLINIC_A, 24, seed=4)
    pos = pos + np.array([0.3, -0.2, 0.5]) * 8
    results = {}
    for backend in ("torch", "python"):
        system = make_system(numbers, TRICLINIC_A)
        system.addForce(
            TransIPForce(models["local"], atomic_numbers=numbers, system=system, periodic=True, backend=backend)
        )
        results[backend] = openmm_eval(system, pos, platform, TRICLINIC_A)
    e_ref, f_ref = ase_eval(models["local"], numbers, pos, TRICLINIC_A)
    for e, f in results.values():
        assert abs(e - e_ref) < E_TOL
        np.testing.assert_allclose(f, f_ref, atol=F_TOL, rtol=0)


@pytest.mark.parametrize("which", ["spread", "spread213"])
def test_learned_spread_charged_box_torch_vs_python_vs_ase(models, which):
    """A learned charge/spin spread (model-file format 3, random uneven weights), charged doublet in a box: the
    TorchForce computes the spread's weight sum over the whole system inside the module, as the others do."""
    if which not in models:
        pytest.fail("TRANSIP_TORCH213_SPREAD_MODEL (a spread model written by torch 2.13) was not given")
    numbers, pos = random_box_atoms(TRICLINIC_A, 24, seed=5)
    charge = 1 if sum(numbers) % 2 == 0 else 0
    results = {}
    for backend in ("torch", "python"):
        system = make_system(numbers, TRICLINIC_A)
        force = TransIPForce(
            models[which], atomic_numbers=numbers, system=system, periodic=True, backend=backend, charge=charge,
            multiplicity=2,
        )  # fmt: skip
        system.addForce(force)
        results[backend] = openmm_eval(system, pos, "Reference", TRICLINIC_A)
    e_ref, f_ref = ase_eval(models[which], numbers, pos, TRICLINIC_A, charge=charge, spin=2)
    for e, f in results.values():
        assert abs(e - e_ref) < E_TOL
        np.testing.assert_allclose(f, f_ref, atol=F_TOL, rtol=0)


def test_nve_torch_backend(tmp_path):
    """4,000 steps (of TIMESTEP_FS, Reference platform, float64) with the torch backend; same model, tether
    and bound as tests/test_openmm_nve.py (rms fluctuation and drift < 1e-3 of the mean kinetic energy;
    see there for why), on a shorter run to keep the tier fast."""
    from openmm import unit
    from test_openmm_nve import RELATIVE_BOUND, TIMESTEP_FS, nve_model, tethered_ethanol

    ctx, integrator = tethered_ethanol(nve_model(tmp_path), backend="torch")
    total, kinetic = [], []
    for _ in range(40):
        integrator.step(100)
        st = ctx.getState(getEnergy=True)
        kinetic.append(st.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole))
        total.append(kinetic[-1] + st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    total = np.array(total)
    mean_k = float(np.mean(kinetic))
    t_ps = 100 * TIMESTEP_FS / 1000.0 * np.arange(40)
    drift = np.polyfit(t_ps, total, 1)[0] * t_ps[-1]
    print(f"torch NVE: rms {total.std():.3e} kJ/mol, drift {drift:.3e} kJ/mol over the run, <KE> {mean_k:.2f}")
    assert mean_k > 5.0
    assert total.std() < RELATIVE_BOUND * mean_k
    assert abs(drift) < RELATIVE_BOUND * mean_k


def test_mixed_system_torch_backend(tmp_path):
    cfg = TransIPConfig(cutoff=None, dtype="float64", d_model=32, n_heads=2, elements=[1, 6, 8])
    path = str(export(random_model(cfg, seed=21), tmp_path / "mlmm.pt"))
    top, pos = build()
    potential = MLPotential("transip", modelPath=path, backend="torch")
    mixed = potential.createMixedSystem(top, mm_system(top), list(range(9)), forceGroup=3)
    assert any(f.getName() == "TransIP (torch)" for f in mixed.getForces())
    e_ml_ref = ml_reference(path, pos)
    assert abs(energy(mixed, pos, groups={3}) - e_ml_ref) < E_TOL
    assert abs(energy(mixed, pos) - (e_ml_ref + energy(mm_system(top, drop_ml_internal=True), pos))) < 1e-6
    # forces: zero on the MM atoms from the ML force, equal to ASE's on the ML atoms
    ctx = openmm.Context(mixed, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
    ctx.setPositions(pos)
    f = ctx.getState(getForces=True, groups={3}).getForces(asNumpy=True)._value
    assert np.all(f[9:] == 0.0)
    _, f_ref = ase_eval(path, [app.Element.getBySymbol(s).atomic_number for s in "CCOHHHHHH"], pos[:9] * 10)
    np.testing.assert_allclose(f[:9], f_ref, atol=F_TOL, rtol=0)


def test_serialize_system_refuses_torchforce_but_python_backend_round_trips(models):
    """openmm.XmlSerializer.serialize segfaults on a System with a TorchForce in this build: serialize_system
    raises a Python error before OpenMM is asked (the process survives); the python backend serializes."""
    system = make_system(ETHANOL_Z)
    system.addForce(TransIPForce(models["global"], atomic_numbers=ETHANOL_Z, backend="torch"))
    with pytest.raises(SerializationError, match="backend='torch'"):
        serialize_system(system)
    other = make_system(ETHANOL_Z)
    other.addForce(TransIPForce(models["global"], atomic_numbers=ETHANOL_Z, backend="python"))
    clone = openmm.XmlSerializer.deserialize(serialize_system(other))
    assert (
        openmm_eval(clone, ETHANOL_A)[0] == openmm_eval(system, ETHANOL_A)[0]
        or abs(openmm_eval(clone, ETHANOL_A)[0] - openmm_eval(system, ETHANOL_A)[0]) < E_TOL
    )


def test_verlet_skin_trajectory_equals_search_every_step(models):
    """A real TorchForce keeps the module's Verlet list between steps (the module's state lives in TorchForce's
    copy): 200 steps of 0.5 fs at 600 K in a triclinic box with a 1 Å skin (clipped to the box's 0.65 Å) follow
    the trajectory of a pair search every step (skin 0) to float64 rounding."""
    numbers, pos = random_box_atoms(TRICLINIC_A, 24, seed=4)
    finals = {}
    for skin in (1.0, 0.0):
        system = make_system(numbers, TRICLINIC_A)
        system.addForce(
            TransIPForce(
                models["local"],
                atomic_numbers=numbers,
                system=system,
                periodic=True,
                backend="torch",
                skin_angstrom=skin,
            )
        )
        integrator = openmm.VerletIntegrator(0.0005)
        ctx = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
        ctx.setPositions(pos * ANGSTROM_TO_NM)
        ctx.setVelocitiesToTemperature(600, 17)
        integrator.step(200)
        finals[skin] = ctx.getState(getPositions=True).getPositions(asNumpy=True)._value
    moved = np.linalg.norm(finals[0.0] - pos * ANGSTROM_TO_NM, axis=1).max()
    assert moved > 0.65 * ANGSTROM_TO_NM / 2  # far enough (nm) that the list must have been rebuilt along the way
    np.testing.assert_allclose(finals[1.0], finals[0.0], atol=1e-10, rtol=0)
