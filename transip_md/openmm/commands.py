"""``transip-md md``: OpenMM molecular dynamics of a structure file (xyz/extxyz/pdb) with a TransIP model."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import openmm

from ..validation import InputError


def load_structure(path: str):
    """(Topology, positions nm (N, 3), charge or None, multiplicity or None) from a .pdb or ASE-readable file.

    Periodic cells (extxyz ``pbc``/``Lattice``, PDB CRYST1) become the Topology's box in OpenMM's reduced
    form; an extxyz file's ``charge``/``spin`` info keys are returned for defaults.
    """
    import openmm.app as app
    from openmm import unit

    if path.lower().endswith(".pdb"):
        pdb = app.PDBFile(path)
        pos = np.asarray(pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
        return pdb.topology, pos, None, None
    import ase.io
    from openmm.app.internal.unitcell import reducePeriodicBoxVectors

    atoms = ase.io.read(path)
    top = app.Topology()
    chain = top.addChain()
    res = top.addResidue("MOL", chain)
    for i, z in enumerate(atoms.numbers):
        element = app.Element.getByAtomicNumber(int(z))
        top.addAtom(f"{element.symbol}{i + 1}", element, res)
    if atoms.pbc.all():
        rcell, _ = atoms.cell.standard_form()  # lower triangular: a along x, b in the xy plane
        atoms.set_cell(rcell, scale_atoms=True)
        top.setPeriodicBoxVectors(reducePeriodicBoxVectors([list(row * 0.1) for row in np.asarray(atoms.cell)]))
    elif atoms.pbc.any():
        raise InputError(f"{path}: partly periodic cells (pbc={atoms.pbc.tolist()}) are not supported by OpenMM")
    return top, atoms.positions * 0.1, atoms.info.get("charge"), atoms.info.get("spin")


class XYZReporter:
    """Writes an XYZ trajectory (Å) every ``interval`` steps."""

    def __init__(self, path: str, interval: int, topology) -> None:
        self._out = open(path, "w")  # noqa: SIM115 - closed in close()
        self._interval = interval
        self._symbols = [a.element.symbol for a in topology.atoms()]

    def describeNextReport(self, simulation):  # noqa: N802 - OpenMM reporter API
        steps = self._interval - simulation.currentStep % self._interval
        return {"steps": steps, "periodic": False, "include": ["positions"]}

    def report(self, simulation, state) -> None:
        pos = state.getPositions(asNumpy=True).value_in_unit(openmm.unit.angstrom)
        self._out.write(f"{len(pos)}\nstep={simulation.currentStep}\n")
        for s, p in zip(self._symbols, pos, strict=True):
            self._out.write(f"{s} {p[0]:.6f} {p[1]:.6f} {p[2]:.6f}\n")
        self._out.flush()

    def close(self) -> None:
        self._out.close()


def default_model() -> str | None:
    from .mlpotential import default_model_path

    return default_model_path()


def run_md(args: argparse.Namespace) -> int:
    import openmm.app as app
    from openmm import unit

    from .force import TransIPForce

    model = args.model or default_model()
    if model is None:
        raise SystemExit("transip-md md: no pretrained model is shipped with this installation; pass --model FILE")
    topology, pos, charge0, spin0 = load_structure(args.structure)
    charge = args.charge if args.charge is not None else int(charge0 or 0)
    multiplicity = args.multiplicity if args.multiplicity is not None else int(spin0 or 1)
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    if topology.getPeriodicBoxVectors() is not None:
        system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
    force = TransIPForce(
        model,
        charge=charge,
        multiplicity=multiplicity,
        device=args.device,
        precision=args.precision,
        backend=args.backend,
        topology=topology,
        system=system,
        **({} if args.skin is None else {"skin_angstrom": args.skin}),
        torch_compile=args.torch_compile,
    )
    system.addForce(force)
    dt = args.timestep * unit.femtoseconds
    if args.integrator == "langevin":
        integrator = openmm.LangevinMiddleIntegrator(
            args.temperature * unit.kelvin, args.friction / unit.picosecond, dt
        )
        integrator.setRandomNumberSeed(args.seed)
        system.addForce(openmm.CMMotionRemover())
    else:
        integrator = openmm.VerletIntegrator(dt)
    platform = openmm.Platform.getPlatformByName(args.platform)
    props = {"Threads": str(args.threads)} if args.platform == "CPU" and args.threads else {}
    simulation = app.Simulation(topology, system, integrator, platform, props)
    simulation.context.setPositions(pos)
    if args.minimize:
        simulation.minimizeEnergy(maxIterations=args.minimize)
    simulation.context.setVelocitiesToTemperature(args.temperature * unit.kelvin, args.seed)
    reporters = []
    interval = max(1, args.report_interval)
    if args.trajectory:
        if args.trajectory.lower().endswith(".dcd"):
            reporters.append(app.DCDReporter(args.trajectory, interval))
        elif args.trajectory.lower().endswith(".xyz"):
            reporters.append(XYZReporter(args.trajectory, interval, topology))
        else:
            raise SystemExit(f"transip-md md: trajectory must end in .dcd or .xyz, got {args.trajectory}")
    if args.csv:
        reporters.append(
            app.StateDataReporter(
                args.csv,
                interval,
                step=True,
                time=True,
                potentialEnergy=True,
                kineticEnergy=True,
                totalEnergy=True,
                temperature=True,
                speed=True,
                separator=",",
            )
        )
    simulation.reporters.extend(reporters)
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        tqdm = None
    bar = tqdm(total=args.steps, unit="step", disable=args.quiet or tqdm is None, file=sys.stderr)
    start = time.perf_counter()
    done = 0
    while done < args.steps:
        chunk = min(interval, args.steps - done)
        simulation.step(chunk)
        done += chunk
        bar.update(chunk)
    bar.close()
    elapsed = time.perf_counter() - start
    for r in reporters:
        if hasattr(r, "close"):
            r.close()
        elif hasattr(r, "_out"):
            r._out.flush()
    state = simulation.context.getState(getEnergy=True)
    ns_per_day = args.steps * args.timestep * 1e-6 / (elapsed / 86400.0) if elapsed > 0 else float("inf")
    print(
        f"transip-md md: {args.steps} steps in {elapsed:.2f} s ({args.steps / max(elapsed, 1e-12):.1f} steps/s, "
        f"{ns_per_day:.3f} ns/day); final potential energy "
        f"{state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole):.6f} kJ/mol; backend "
        f"{force.getName()}"
    )
    if args.output:
        final = simulation.context.getState(getPositions=True)
        with open(args.output, "w") as fh:
            app.PDBFile.writeFile(topology, final.getPositions(), fh)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "md",
        help="run OpenMM MD on a structure with a TransIP model",
        description="OpenMM molecular dynamics of an xyz/extxyz/pdb structure with a compiled TransIP model.",
    )
    p.add_argument("structure", help="structure file: .pdb or anything ASE reads (xyz, extxyz with cell/pbc)")
    p.add_argument("--model", help="compiled model file (default: the pretrained model shipped with transip-md)")
    p.add_argument("--charge", type=int, default=None, help="total charge, e (default: file info or 0)")
    p.add_argument("--multiplicity", type=int, default=None, help="spin multiplicity 2S+1 (default: file or 1)")
    p.add_argument("--integrator", choices=("langevin", "verlet"), default="langevin")
    p.add_argument("--temperature", type=float, default=300.0, help="K (thermostat and initial velocities)")
    p.add_argument("--friction", type=float, default=1.0, help="Langevin friction, 1/ps")
    p.add_argument("--timestep", type=float, default=0.5, help="fs")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--report-interval", type=int, default=100, help="steps between reports and progress updates")
    p.add_argument("--trajectory", help="trajectory file (.dcd or .xyz)")
    p.add_argument("--csv", help="CSV log: step, time, energies (kJ/mol), temperature (K), speed (ns/day)")
    p.add_argument("--output", help="write the final structure to this PDB file")
    p.add_argument("--minimize", type=int, default=0, metavar="N", help="minimise for up to N iterations first")
    p.add_argument("--platform", default="CPU", choices=("Reference", "CPU", "CUDA", "OpenCL"))
    p.add_argument("--threads", type=int, default=0, help="CPU platform threads (0: OpenMM's default)")
    p.add_argument("--backend", choices=("auto", "torch", "python"), default="auto")
    p.add_argument("--precision", choices=("single", "double"), default=None)
    p.add_argument("--device", default="auto", help="torch device for the model: auto, cpu, cuda, cuda:N")
    p.add_argument("--skin", type=float, default=None, help="Verlet skin, Å (torch backend; default 1.0)")
    p.add_argument("--torch-compile", action="store_true", help="run the model through torch.compile (python backend)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_md)


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="transip-md")
    register(parser.add_subparsers(dest="command", required=True))
    a = parser.parse_args()
    sys.exit(a.func(a))
