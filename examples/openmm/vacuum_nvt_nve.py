"""Paracetamol in vacuum with a TransIP model: Langevin NVT at 300 K, then NVE (energy drift reported).

    python examples/openmm/vacuum_nvt_nve.py [--model model.pt] [--nvt-steps 500] [--nve-steps 500]

Defaults run in well under a minute on one CPU core. Writes vacuum_nvt_nve.{csv,dcd} in --outdir.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
from openmm import unit

sys.path.insert(0, str(Path(__file__).parent))
from _common import pick_model  # noqa: E402

from transip_md.openmm.simulation import build_system, load_structure, make_reporters  # noqa: E402

HERE = Path(__file__).parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model")
    p.add_argument("--structure", default=str(HERE / "paracetamol.xyz"))
    p.add_argument("--nvt-steps", type=int, default=500)
    p.add_argument("--nve-steps", type=int, default=500)
    p.add_argument("--timestep", type=float, default=0.5, help="fs")
    p.add_argument("--backend", default="auto")
    p.add_argument("--platform", default="CPU")
    p.add_argument("--outdir", default=".")
    args = p.parse_args()
    model = pick_model(args.model)
    topology, pos, _, _ = load_structure(args.structure)
    system, _ = build_system(topology, model, charge=0, multiplicity=1, backend=args.backend)
    system.addForce(openmm.CMMotionRemover())
    dt = args.timestep * unit.femtoseconds
    integrator = openmm.CompoundIntegrator()
    integrator.addIntegrator(openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, dt))
    integrator.addIntegrator(openmm.VerletIntegrator(dt))
    sim = app.Simulation(topology, system, integrator, openmm.Platform.getPlatformByName(args.platform))
    sim.context.setPositions(pos)
    sim.minimizeEnergy(maxIterations=50)
    sim.context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    out = Path(args.outdir)
    sim.reporters.extend(make_reporters(topology, 50, str(out / "vacuum_nvt_nve.dcd"), str(out / "vacuum_nvt_nve.csv")))
    integrator.setCurrentIntegrator(0)
    sim.step(args.nvt_steps)
    print(f"NVT {args.nvt_steps} steps done: T = {_temperature(sim, system):.1f} K")
    integrator.setCurrentIntegrator(1)
    energies = []
    for _ in range(max(1, args.nve_steps // 50)):
        sim.step(50)
        st = sim.context.getState(getEnergy=True)
        energies.append((st.getPotentialEnergy() + st.getKineticEnergy()).value_in_unit(unit.kilojoule_per_mole))
    e = np.array(energies)
    print(
        f"NVE {args.nve_steps} steps: total energy {e.mean():.4f} kJ/mol, rms fluctuation {e.std():.2e}, "
        f"max deviation {np.abs(e - e[0]).max():.2e} kJ/mol"
    )


def _temperature(sim, system) -> float:
    ke = sim.context.getState(getEnergy=True).getKineticEnergy()
    dof = 3 * system.getNumParticles() - 3
    return (2 * ke / (dof * unit.MOLAR_GAS_CONSTANT_R)).value_in_unit(unit.kelvin)


if __name__ == "__main__":
    main()
