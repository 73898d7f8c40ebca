"""NVE with TransIPForce: 5 ps at 0.25 fs (20,000 velocity-Verlet steps, float64) conserves total energy.

System: ethanol (9 atoms) with a random-weight float64 global model (smooth by construction: cubic-spline
radial bias, rotary encodings, softmax attention, SiLU MLPs; energy scale 5 eV) through the 'python' backend on the
Reference platform (double precision), plus a weak harmonic tether of every atom to its start point
(k = 200 kJ/mol/nm^2, analytic OpenMM force) so that a random model, which has no bonds, keeps the molecule
in the region where it was started instead of letting atoms drift apart. The model includes the nuclear-repulsion
prior of every model file; the random learned surface pushes atoms onto its steep wall, so this surface is much
stiffer than a trained one's, hence 0.25 fs (at 0.5 fs the rms fluctuation is 4.1x larger, the dt^2 scaling of
a consistent integrator, and touches the bound).

Bounds and why: velocity Verlet is symplectic, so with forces that are the exact gradient of the energy
the total energy fluctuates at O(dt^2) about a constant (measured here: ~1e-4 kJ/mol rms against a mean
kinetic energy of ~17 kJ/mol, i.e. ~5e-6 relative) and shows no systematic drift. Forces inconsistent
with the energy (wrong unit factor, sign, a missing image or pair term) change the total energy by a
fraction of order one of the kinetic energy within picoseconds. The test allows rms fluctuation and the
linear drift over the run each up to 1e-3 of the mean kinetic energy: two orders of magnitude above the
integrator's error, two to three below what a force/energy mismatch produces. It also requires the
TransIP energy to vary by far more than the bound, so that conservation is not trivially satisfied.
"""

from __future__ import annotations

import numpy as np
import openmm
import openmm.app
import pytest
import torch
from conftest import ETHANOL_A, ETHANOL_Z
from openmm import unit

from transip_md.model import TransIPConfig, export, random_model
from transip_md.openmm import TransIPForce

ETHANOL_NM = 0.1 * ETHANOL_A
KJ = unit.kilojoule_per_mole
RELATIVE_BOUND = 1e-3
TIMESTEP_FS = 0.25


def nve_model(folder):
    """The random float64 global model of the module docstring, exported to folder/nve.pt."""
    cfg = TransIPConfig(
        cutoff=None, dtype="float64", d_model=16, n_heads=2, n_layers=1, n_rope_freqs=1, elements=[1, 6, 8]
    )
    model = random_model(cfg, seed=11)
    model.energy_scale.fill_(5.0)  # eV: a random model's forces of a few 0.1 eV/Å, like a real molecule's
    return export(model, folder / "nve.pt")


def tethered_ethanol(model_path, backend: str) -> tuple[openmm.Context, openmm.VerletIntegrator]:
    """Ethanol with TransIPForce (force group 1) plus the weak tether of the module docstring, NVE at 0.5 fs,
    Reference platform, velocities drawn at 300 K (seed 1), time step TIMESTEP_FS."""
    system = openmm.System()
    for z in ETHANOL_Z:
        system.addParticle(openmm.app.Element.getByAtomicNumber(z).mass)
    system.addForce(TransIPForce(model_path, atomic_numbers=ETHANOL_Z, backend=backend, force_group=1))
    tether = openmm.CustomExternalForce("0.5*k*((x-x0)^2+(y-y0)^2+(z-z0)^2)")
    tether.addGlobalParameter("k", 200.0)
    for name in ("x0", "y0", "z0"):
        tether.addPerParticleParameter(name)
    for i, p in enumerate(ETHANOL_NM):
        tether.addParticle(i, list(p))
    system.addForce(tether)
    integrator = openmm.VerletIntegrator(TIMESTEP_FS * unit.femtoseconds)
    ctx = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(ETHANOL_NM)
    ctx.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    return ctx, integrator


@pytest.mark.slow
def test_nve_energy_conservation(tmp_path, record_property):
    torch.set_num_threads(1)
    ctx, integrator = tethered_ethanol(nve_model(tmp_path), backend="python")
    total, kinetic, ml = [], [], []
    for _ in range(200):  # 200 x 100 steps = 20,000 steps
        integrator.step(100)
        st = ctx.getState(getEnergy=True)
        k = st.getKineticEnergy().value_in_unit(KJ)
        kinetic.append(k)
        total.append(k + st.getPotentialEnergy().value_in_unit(KJ))
        ml.append(ctx.getState(getEnergy=True, groups={1}).getPotentialEnergy().value_in_unit(KJ))
    total, kinetic, ml = np.array(total), np.array(kinetic), np.array(ml)
    t_ps = 100 * TIMESTEP_FS / 1000.0 * np.arange(1, 201)
    drift = np.polyfit(t_ps, total, 1)[0] * t_ps[-1]  # kJ/mol over the run
    fluct = total.std()
    mean_k = kinetic.mean()
    record_property("nve_fluctuation_kj_mol", fluct)
    record_property("nve_drift_kj_mol_per_run", drift)
    print(
        f"NVE {t_ps[-1]:g} ps: rms fluctuation {fluct:.3e} kJ/mol, drift {drift:.3e} kJ/mol, <KE> {mean_k:.3f} kJ/mol"
    )
    assert np.all(np.isfinite(total))
    assert mean_k > 5.0  # the molecule really moved (300 K start: ~20 kJ/mol shared with the tether)
    assert ml.max() - ml.min() > 100 * RELATIVE_BOUND * mean_k  # the TransIP forces did real work
    assert fluct < RELATIVE_BOUND * mean_k
    assert abs(drift) < RELATIVE_BOUND * mean_k
