"""OpenMM's LocalEnergyMinimizer on a small molecule with the shipped model (docs/openmm.md).

The minimiser opens with a 1 nm (total norm) step along the force; on CH2Br2 that step carries the two H atoms
through each other (0.03 Å apart with the v2 stage 9 weights). The force must answer such trial points with the
model's repulsive wall, so that the line search backs away, instead of stopping the minimisation with an error.
"""

from __future__ import annotations

import numpy as np
import openmm
import pytest
from ase.data import atomic_masses
from conftest import CH2BR2_A, CH2BR2_Z, closest_distance
from openmm import unit

import transip_md.openmm.force as force_module
from transip_md.data import default_model_path
from transip_md.openmm import TransIPForce
from transip_md.units import ANGSTROM_TO_NM


@pytest.mark.parametrize("tolerance", [1.0, 10.0])
def test_minimizer_backs_away_from_its_overlapping_trial_step(monkeypatch, tolerance):
    seen: list[float] = []
    real_predict = force_module.predict

    def recording_predict(model, numbers, positions, *args, **kwargs):
        seen.append(closest_distance(np.asarray(positions)))
        return real_predict(model, numbers, positions, *args, **kwargs)

    monkeypatch.setattr(force_module, "predict", recording_predict)
    system = openmm.System()
    for z in CH2BR2_Z:
        system.addParticle(float(atomic_masses[z]))
    system.addForce(TransIPForce(default_model_path(), atomic_numbers=CH2BR2_Z, backend="python"))
    context = openmm.Context(system, openmm.VerletIntegrator(0.0005), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(CH2BR2_A * ANGSTROM_TO_NM)
    start = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    openmm.LocalEnergyMinimizer.minimize(context, tolerance, 0)
    state = context.getState(getEnergy=True, getPositions=True, getForces=True)
    end = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    final_a = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    # the case this test is about happened: a trial point inside the ASE calculator's 0.1 Å input limit
    assert min(seen) < 0.1
    assert end < start
    assert closest_distance(final_a) > 0.9  # C-H, the shortest bond, stays a bond
    assert np.linalg.norm(forces) < 5 * tolerance * np.sqrt(len(CH2BR2_Z))
