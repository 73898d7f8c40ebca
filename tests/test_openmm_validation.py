"""Issue 14 #5/#7: OpenMM refuses overlapping atoms and absurd coordinates with the ASE calculator's rules
(transip_md.validation), in both backends, instead of a finite energy or a crash in native code."""

from __future__ import annotations

import numpy as np
import openmm
import pytest
from conftest import ETHANOL_A, ETHANOL_Z, make_model
from openmm import unit

from transip_md.model import export, load_compiled
from transip_md.openmm import TransIPForce, create_transip_force
from transip_md.openmm.torch_module import build_torch_module
from transip_md.units import ANGSTROM_TO_NM


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("openmm-validation")
    return {"global": str(export(make_model(None), d / "g.pt")), "local": str(export(make_model(3.5), d / "l.pt"))}


def python_energy(model: str, positions_a: np.ndarray) -> float:
    system = openmm.System()
    for _ in ETHANOL_Z:
        system.addParticle(12.0)
    system.addForce(TransIPForce(model, atomic_numbers=ETHANOL_Z, backend="python"))
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions_a * ANGSTROM_TO_NM)
    return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


@pytest.mark.parametrize("kind", ["global", "local"])
def test_python_backend_refuses_overlap_and_far_atoms(models, kind):
    assert np.isfinite(python_energy(models[kind], ETHANOL_A))
    same = ETHANOL_A.copy()
    same[5] = same[1]
    with pytest.raises(Exception, match=r"atoms 1 \(C\) and 5 \(H\) overlap: distance 0.0000 Å"):
        python_energy(models[kind], same)
    far = ETHANOL_A.copy()
    far[0, 0] = 2e5
    with pytest.raises(Exception, match=r"atom 0 \(C\): position .* further than 10000 Å"):
        python_energy(models[kind], far)


@pytest.mark.parametrize("kind", ["global", "local"])
def test_torch_module_refuses_overlap_and_far_atoms(models, kind):
    compiled = load_compiled(models[kind])
    module = build_torch_module(
        compiled.module, ETHANOL_Z, len(ETHANOL_Z), None, compiled.cutoff, False, 0, 1, torch_dtype()
    )
    import torch

    pos = torch.tensor(ETHANOL_A * ANGSTROM_TO_NM)
    energy, _ = module(pos)
    assert torch.isfinite(energy)
    same = pos.clone()
    same[5] = same[1]
    with pytest.raises(Exception, match=r"atoms 1 \(C\) and 5 \(H\) overlap"):
        module(same)
    far = pos.clone()
    far[0, 0] = 2e4  # nm = 2e5 Å
    with pytest.raises(Exception, match=r"atom 0 \(C\): position is further than 10000 Å"):
        module(far)


def torch_dtype():
    import torch

    return torch.float64


def near(positions_a: np.ndarray, distance_a: float) -> np.ndarray:
    """Ethanol with H 5 put ``distance_a`` Å from C 1."""
    out = positions_a.copy()
    out[5] = out[1] + np.array([distance_a, 0.0, 0.0])
    return out


@pytest.mark.parametrize("kind", ["global", "local"])
def test_both_backends_give_the_repulsive_wall_inside_the_input_limit(models, kind):
    """Between COINCIDENT_DISTANCE_A (0.01 Å) and MIN_DISTANCE_A (0.1 Å) the OpenMM force returns the model's
    nuclear-repulsion wall (finite, far above the intact molecule, rising as the atoms close), the trial points
    OpenMM's minimiser needs; the ASE calculator's rule (predict) still refuses such a structure as input."""
    import torch

    from transip_md.model.evaluate import predict
    from transip_md.validation import COINCIDENT_DISTANCE_A, MIN_DISTANCE_A, InputError

    assert COINCIDENT_DISTANCE_A < MIN_DISTANCE_A
    intact = python_energy(models[kind], ETHANOL_A)
    walls = [python_energy(models[kind], near(ETHANOL_A, d)) for d in (0.08, 0.05, 0.02)]
    assert all(np.isfinite(walls))
    assert intact + 1e4 < walls[0] < walls[1] < walls[2]  # kJ/mol: C-H ZBL is ~700 eV at 0.08 Å
    compiled = load_compiled(models[kind])
    module = build_torch_module(
        compiled.module, ETHANOL_Z, len(ETHANOL_Z), None, compiled.cutoff, False, 0, 1, torch_dtype()
    )
    torch_wall, _ = module(torch.tensor(near(ETHANOL_A, 0.05) * ANGSTROM_TO_NM))
    assert float(torch_wall) == pytest.approx(walls[1], rel=1e-9)
    with pytest.raises(Exception, match=r"atoms 1 \(C\) and 5 \(H\) overlap: distance 0.0050 Å < 0.01 Å"):
        python_energy(models[kind], near(ETHANOL_A, 0.005))
    with pytest.raises(Exception, match=r"atoms 1 \(C\) and 5 \(H\) overlap: distance 0.005"):
        module(torch.tensor(near(ETHANOL_A, 0.005) * ANGSTROM_TO_NM))
    with pytest.raises(InputError, match=r"atoms 1 \(C\) and 5 \(H\) overlap: distance 0.0500 Å < 0.1 Å"):
        predict(compiled, np.asarray(ETHANOL_Z), near(ETHANOL_A, 0.05))


def test_old_name_is_the_factory():
    assert TransIPForce is create_transip_force
