"""``transip-md md``: OpenMM molecular dynamics of a structure file (xyz/extxyz/pdb) with a TransIP model."""

from __future__ import annotations

import argparse
import sys

import openmm

from ..validation import InputError


def load_structure(path: str):
    """:func:`transip_md.openmm.simulation.load_structure` (kept here for older imports; imported lazily so that
    building the CLI does not import torch)."""
    from .simulation import load_structure as load

    return load(path)


def default_model() -> str | None:
    from .mlpotential import default_model_path

    return default_model_path()


def run_md(args: argparse.Namespace) -> int:
    """The ``md`` command: System, integrator, reporters and run loop from :mod:`transip_md.openmm.simulation`."""
    import openmm.app as app

    from .simulation import build_system, close_reporters, make_integrator, make_reporters, run_steps

    model = args.model or default_model()
    if model is None:
        raise SystemExit("transip-md md: no pretrained model is shipped with this installation; pass --model FILE")
    topology, pos, charge0, spin0 = load_structure(args.structure)
    charge = args.charge if args.charge is not None else int(charge0 or 0)
    multiplicity = args.multiplicity if args.multiplicity is not None else int(spin0 or 1)
    skin = {} if args.skin is None else {"skin_angstrom": args.skin}
    system, force = build_system(
        topology,
        model,
        charge=charge,
        multiplicity=multiplicity,
        device=args.device,
        precision=args.precision,
        backend=args.backend,
        torch_compile=args.torch_compile,
        **skin,
    )
    integrator = make_integrator(system, args.integrator, args.timestep, args.temperature, args.friction, args.seed)
    platform = openmm.Platform.getPlatformByName(args.platform)
    props = {"Threads": str(args.threads)} if args.platform == "CPU" and args.threads else {}
    simulation = app.Simulation(topology, system, integrator, platform, props)
    simulation.context.setPositions(pos)
    if args.minimize:
        simulation.minimizeEnergy(maxIterations=args.minimize)
    simulation.context.setVelocitiesToTemperature(args.temperature * openmm.unit.kelvin, args.seed)
    interval = max(1, args.report_interval)
    try:
        reporters = make_reporters(topology, interval, args.trajectory, args.csv)
    except InputError as exc:
        raise SystemExit(f"transip-md md: {exc}") from exc
    simulation.reporters.extend(reporters)
    stats = run_steps(simulation, args.steps, args.timestep, interval, progress=not args.quiet)
    close_reporters(reporters)
    # the command's result line (stdout); library code logs
    print(
        f"transip-md md: {stats.steps} steps in {stats.seconds:.2f} s "
        f"({stats.steps / max(stats.seconds, 1e-12):.1f} steps/s, {stats.ns_per_day:.3f} ns/day); final potential "
        f"energy {stats.potential_kj_per_mol:.6f} kJ/mol; backend {force.getName()}"
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
