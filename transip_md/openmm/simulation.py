"""Building blocks of an OpenMM run with a TransIP model (used by ``transip-md md`` and examples/openmm):
structure loading, the System, the integrator, reporters and the run loop. Units: OpenMM's (nm, ps, kJ/mol)
unless a name says otherwise (``timestep_fs``, positions from files in Å are converted)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import openmm
import openmm.app as app
from openmm import unit

from ..units import ANGSTROM_TO_NM, NM_TO_ANGSTROM
from ..validation import InputError, check_positions
from .force import create_transip_force

logger = logging.getLogger(__name__)


def load_structure(path: str):
    """(Topology, positions nm (N, 3), charge or None, multiplicity or None) from a .pdb or ASE-readable file.

    Periodic cells (extxyz ``pbc``/``Lattice``, PDB CRYST1) become the Topology's box in OpenMM's reduced
    form; an extxyz file's ``charge``/``spin`` info keys are returned for defaults. The positions must pass the
    input rules every engine applies (:func:`transip_md.validation.check_positions`: finite, no two atoms closer
    than 0.1 Å), checked here because the OpenMM force itself also accepts its minimiser's trial points down to
    0.01 Å (docs/openmm.md); the error names the file.
    """
    if path.lower().endswith(".pdb"):
        pdb = app.PDBFile(path)
        pos = np.asarray(pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
        box = pdb.topology.getPeriodicBoxVectors()
        cell = None if box is None else np.asarray(box.value_in_unit(unit.angstrom), dtype=np.float64)
        numbers = [atom.element.atomic_number if atom.element else 0 for atom in pdb.topology.atoms()]
        check_structure(path, numbers, pos * NM_TO_ANGSTROM, cell)
        return pdb.topology, pos, None, None
    import ase.io
    from openmm.app.internal.unitcell import reducePeriodicBoxVectors

    atoms = ase.io.read(path)
    top = app.Topology()
    res = top.addResidue("MOL", top.addChain())
    for i, z in enumerate(atoms.numbers):
        element = app.Element.getByAtomicNumber(int(z))
        top.addAtom(f"{element.symbol}{i + 1}", element, res)
    if atoms.pbc.all():
        rcell, _ = atoms.cell.standard_form()  # lower triangular: a along x, b in the xy plane
        atoms.set_cell(rcell, scale_atoms=True)
        top.setPeriodicBoxVectors(
            reducePeriodicBoxVectors([list(row * ANGSTROM_TO_NM) for row in np.asarray(atoms.cell)])
        )
    elif atoms.pbc.any():
        raise InputError(f"{path}: partly periodic cells (pbc={atoms.pbc.tolist()}) are not supported by OpenMM")
    check_structure(path, atoms.numbers, atoms.positions, np.asarray(atoms.cell) if atoms.pbc.all() else None)
    return top, atoms.positions * ANGSTROM_TO_NM, atoms.info.get("charge"), atoms.info.get("spin")


def check_structure(path: str, numbers, positions_a: np.ndarray, cell_a: np.ndarray | None) -> None:
    """The engines' input rules for a structure file's positions (Å) and periodic cell (Å rows, or None)."""
    cell = np.zeros((3, 3)) if cell_a is None else np.asarray(cell_a, dtype=np.float64)
    pbc = np.full(3, cell_a is not None)
    try:
        check_positions(numbers, np.asarray(positions_a, dtype=np.float64), cell, pbc)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc


def build_system(topology: app.Topology, model: str, **force_args) -> tuple[openmm.System, openmm.Force]:
    """A System of the Topology's atoms (element masses, its box) with the TransIP force added.

    ``force_args`` go to :func:`transip_md.openmm.create_transip_force` (charge, multiplicity, backend, ...).
    """
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    if topology.getPeriodicBoxVectors() is not None:
        system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
    force = create_transip_force(model, topology=topology, system=system, **force_args)
    system.addForce(force)
    return system, force


def make_integrator(
    system: openmm.System,
    kind: str,
    timestep_fs: float,
    temperature_k: float = 300.0,
    friction_per_ps: float = 1.0,
    seed: int = 1,
) -> openmm.Integrator:
    """'langevin' (LangevinMiddle; adds a CMMotionRemover to ``system``) or 'verlet'."""
    dt = timestep_fs * unit.femtoseconds
    if kind == "langevin":
        integrator = openmm.LangevinMiddleIntegrator(temperature_k * unit.kelvin, friction_per_ps / unit.picosecond, dt)
        integrator.setRandomNumberSeed(seed)
        system.addForce(openmm.CMMotionRemover())
        return integrator
    if kind == "verlet":
        return openmm.VerletIntegrator(dt)
    raise ValueError(f"integrator must be 'langevin' or 'verlet', got {kind!r}")


class XYZReporter:
    """Writes an XYZ trajectory (Å) every ``interval`` steps; ``close()`` ends it."""

    def __init__(self, path: str, interval: int, topology) -> None:
        self._file = open(path, "w")  # noqa: SIM115 - closed in close()
        self._interval = interval
        self._symbols = [a.element.symbol for a in topology.atoms()]

    def describeNextReport(self, simulation):  # noqa: N802 - OpenMM reporter API
        steps = self._interval - simulation.currentStep % self._interval
        return {"steps": steps, "periodic": False, "include": ["positions"]}

    def report(self, simulation, state) -> None:
        pos = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
        self._file.write(f"{len(pos)}\nstep={simulation.currentStep}\n")
        for s, p in zip(self._symbols, pos, strict=True):
            self._file.write(f"{s} {p[0]:.6f} {p[1]:.6f} {p[2]:.6f}\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def make_reporters(topology, interval: int, trajectory: str | None = None, csv: str | None = None) -> list:
    """Reporters: a trajectory (.dcd or .xyz) and a CSV log (step, time, energies kJ/mol, T K, speed)."""
    reporters = []
    if trajectory:
        if trajectory.lower().endswith(".dcd"):
            reporters.append(app.DCDReporter(trajectory, interval))
        elif trajectory.lower().endswith(".xyz"):
            reporters.append(XYZReporter(trajectory, interval, topology))
        else:
            raise InputError(f"trajectory must end in .dcd or .xyz, got {trajectory}")
    if csv:
        columns = ("step", "time", "potentialEnergy", "kineticEnergy", "totalEnergy", "temperature", "speed")
        reporters.append(app.StateDataReporter(csv, interval, separator=",", **dict.fromkeys(columns, True)))
    return reporters


def close_reporters(reporters: Sequence) -> None:
    """Close the reporters that own files (XYZReporter, DCDReporter's file via its public close if any)."""
    for reporter in reporters:
        close = getattr(reporter, "close", None)
        if callable(close):
            close()


@dataclass
class RunStats:
    """steps run, wall seconds, ns/day (timestep_fs given), final potential energy kJ/mol."""

    steps: int
    seconds: float
    ns_per_day: float
    potential_kj_per_mol: float


def run_steps(
    simulation: app.Simulation, steps: int, timestep_fs: float, chunk: int = 100, progress: bool = False
) -> RunStats:
    """Run ``steps`` in chunks of ``chunk`` (progress bar on stderr with ``progress``); timing and final energy."""
    from tqdm import tqdm

    bar = tqdm(total=steps, unit="step", disable=not progress, file=sys.stderr)
    start = time.perf_counter()
    done = 0
    while done < steps:
        n = min(max(1, chunk), steps - done)
        simulation.step(n)
        done += n
        bar.update(n)
    bar.close()
    elapsed = time.perf_counter() - start
    state = simulation.context.getState(getEnergy=True)
    ns_per_day = steps * timestep_fs * 1e-6 / (elapsed / 86400.0) if elapsed > 0 else float("inf")
    stats = RunStats(steps, elapsed, ns_per_day, state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    logger.info("%d steps in %.2f s (%.3f ns/day)", steps, elapsed, ns_per_day)
    return stats
