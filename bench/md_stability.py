"""MD stability of a TransIP model on held-out molecules: OpenMM NVT (Langevin) at several temperatures.

A molecule is *stable* when its covalent bond graph (ASE natural cutoffs x 1.2) never changes and no two of its
atoms come closer than 0.6 Å; the report gives, per molecule and temperature, the time to the first break.

All molecules of one temperature run in ONE OpenMM System, 100 Å apart (far beyond the model's cutoff, so they do
not interact), so each MD step is one model call; temperatures run in parallel processes. Molecules are held-out
molecules of the shipped data set's split (never trained on), chosen to cover every element of the model, each
started from its neutral-singlet frame of lowest reference energy, minimised with the model, then given
Maxwell-Boltzmann velocities.

    OMP_NUM_THREADS=1 python bench/md_stability.py --ps 20 --temperatures 300 600 --molecules 12

Each molecule the model breaks is then rerun with GFN2-xTB itself (``--reference-ps``, by default as long as the
model's run; 5 ps before 2026-12-06, too short to see a contact the reference makes after 7.8 ps,
``bench/pair_contact_md.py``) under the same check, so a break the reference also shows (a criterion artefact) is told
apart from a model fault. ``--seed`` 0 is a fixed draw like any other (``openmm_seed``).

Writes bench/results/md_stability.md and .json (or --output PREFIX).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPACING_NM = 10.0  # 100 Å between molecules
MIN_DISTANCE_A = 0.6
BOND_SCALE = 1.2
OPENMM_SEED_FOR_ZERO = 2**31 - 1


def openmm_seed(seed: int) -> int:
    """The seed given to OpenMM's Langevin integrator and velocities for this bench's ``seed``. OpenMM reads 0 as
    "pick a new random seed every time", so seed 0 is mapped to a fixed nonzero value and every draw repeats;
    other seeds pass unchanged. (Until 2026-12-06 seed 0 went to OpenMM as 0: those draws cannot be repeated.)"""
    return seed if seed != 0 else OPENMM_SEED_FOR_ZERO


def record_schedule(ps: float, timestep_fs: float, record_fs: float) -> tuple[int, int]:
    """(MD steps between two records, number of records) for ``ps`` of MD recorded every ``record_fs``."""
    steps_per_record = max(1, int(round(record_fs / timestep_fs)))
    return steps_per_record, int(round(ps * 1000.0 / (steps_per_record * timestep_fs)))


def openmm_langevin(
    model: str,
    numbers: np.ndarray,
    positions_nm: np.ndarray,
    temperature: float,
    timestep_fs: float,
    seed: int,
    tolerance: float = 1.0,
    max_iterations: int = 200,
    minimise: bool = True,
):
    """An OpenMM Reference context of ``model`` (python backend) with Langevin (1/ps) at ``temperature`` (K):
    minimised (``tolerance`` kJ/mol/nm, ``max_iterations``; skipped with ``minimise=False``, for positions relaxed
    before), then given velocities. Returns (context, integrator, positions), the last a function giving the current
    positions in Å."""
    import openmm
    from ase.data import atomic_masses
    from openmm import unit

    from transip_md.openmm import create_transip_force
    from transip_md.units import NM_TO_ANGSTROM

    system = openmm.System()
    for z in numbers:
        system.addParticle(float(atomic_masses[z]))
    system.addForce(create_transip_force(model, atomic_numbers=numbers.tolist(), backend="python"))
    integrator = openmm.LangevinMiddleIntegrator(
        temperature * unit.kelvin, 1.0 / unit.picosecond, timestep_fs * unit.femtosecond
    )
    integrator.setRandomNumberSeed(openmm_seed(seed))
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions_nm)
    if minimise:
        openmm.LocalEnergyMinimizer.minimize(context, tolerance, max_iterations)
    context.setVelocitiesToTemperature(temperature * unit.kelvin, openmm_seed(seed))

    def positions() -> np.ndarray:
        pos = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        return np.asarray(pos) * NM_TO_ANGSTROM

    return context, integrator, positions


def gfn2_langevin(
    numbers: np.ndarray,
    positions_A: np.ndarray,
    temperature: float,
    timestep_fs: float,
    seed: int,
    fmax: float = 0.05,
    max_steps: int = 200,
):
    """GFN2-xTB (tblite through ASE, neutral singlet): BFGS-relaxed to ``fmax`` eV/Å, Maxwell-Boltzmann velocities
    with the centre-of-mass motion removed, and a Langevin integrator with md_stability's friction (1/ps). The centre
    of mass is held by ASE's ``FixCom`` constraint (``fixcm=False``), which ASE recommends over Langevin's deprecated
    ``fixcm=True`` for small systems (that one was used up to 2026-12-07). Returns (atoms, dynamics)."""
    from ase import Atoms
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.optimize import BFGS
    from tblite.ase import TBLite

    from transip_md.train.label_dynamics import langevin_holding_centre_of_mass

    atoms = Atoms(numbers=numbers, positions=positions_A)
    atoms.calc = TBLite(method="GFN2-xTB", charge=0, multiplicity=1, verbosity=0)
    BFGS(atoms, logfile=None).run(fmax=fmax, steps=max_steps)
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    return atoms, langevin_holding_centre_of_mass(atoms, timestep_fs, temperature, 1e-3, rng)


@dataclass
class Molecule:
    mol_id: str
    numbers: np.ndarray
    positions: np.ndarray  # Å
    smiles: str = ""


def pick_molecules(frames, ids, elements: list[int], n: int, seed: int = 0, max_atoms: int = 25) -> list[Molecule]:
    """At least ``n`` held-out neutral-singlet molecules covering ``elements``: for each element (rarest first) the
    smallest held-out molecule containing it, then random held-out molecules of at most ``max_atoms`` atoms."""
    best = lowest_singlet_frames(frames, ids)
    rng = np.random.default_rng(seed)
    names = sorted(best)
    rng.shuffle(names)
    elems = {m: set(frames[best[m]].numbers.tolist()) for m in names}
    size = {m: frames[best[m]].n_atoms for m in names}
    chosen: list[str] = []
    for z in sorted(elements, key=lambda z: sum(z in elems[m] for m in names)):  # rarest element first
        if any(z in elems[m] for m in chosen):
            continue
        with_z = [m for m in names if z in elems[m] and m not in chosen]
        if with_z:
            chosen.append(min(with_z, key=lambda m: size[m]))
    for m in names:
        if len(chosen) >= n:
            break
        if m not in chosen and size[m] <= max_atoms:
            chosen.append(m)
    return [Molecule(m, frames[best[m]].numbers.copy(), frames[best[m]].positions.copy()) for m in chosen]


def lowest_singlet_frames(frames, ids) -> dict[str, int]:
    """{mol_id: index of its lowest-energy neutral-singlet frame among ``ids``} (the first of equal energies)."""
    best: dict[str, int] = {}
    for i in ids:
        f, m = frames[i], str(frames[i].mol_id)
        if (int(f.charge), int(f.spin)) == (0, 1) and (m not in best or f.energy < frames[best[m]].energy):
            best[m] = i
    return best


def heldout_start(
    bench: str, molecule: str, option: str, symbols: list[str], data: str | None
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(atomic numbers, positions Å, the atomic numbers of ``symbols``) of ``molecule``'s lowest-energy
    neutral-singlet held-out frame; a bad ``option`` symbol or a molecule without such a frame stops ``bench``."""
    from ase.data import atomic_numbers

    from transip_md.train.heldout import heldout_frames

    try:
        elements = [atomic_numbers[s] for s in symbols]
    except KeyError as err:
        raise SystemExit(f"{bench}: unknown element symbol {err} in {option} {' '.join(symbols)}") from None
    frames, held = heldout_frames(data)
    best = lowest_singlet_frames(frames, held)
    if molecule not in best:
        raise SystemExit(f"{bench}: {molecule!r} has no neutral-singlet frame in the held-out split")
    frame = frames[best[molecule]]
    return np.asarray(frame.numbers), np.asarray(frame.positions, dtype=float), elements


def bfgs_relaxed(numbers: np.ndarray, positions: np.ndarray, calc, fmax: float, steps: int) -> np.ndarray:
    """Positions (Å) after ASE BFGS on ``calc`` (neutral singlet) to ``fmax`` eV/Å or ``steps`` steps."""
    from ase import Atoms
    from ase.optimize import BFGS

    atoms = Atoms(numbers=numbers, positions=positions)
    atoms.info.update(charge=0, spin=1)
    atoms.calc = calc
    BFGS(atoms, logfile=None).run(fmax=fmax, steps=steps)
    return atoms.positions.copy()


def contacts(numbers: np.ndarray, positions: np.ndarray) -> tuple[set[tuple[int, int]], float]:
    """Covalent bonds (i < j; ASE natural cutoffs x BOND_SCALE) and the closest pair distance (Å), from one
    distance matrix."""
    from ase.data import covalent_radii

    r = covalent_radii[numbers] * BOND_SCALE
    d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    i, j = np.nonzero(np.triu(d < r[:, None] + r[None, :], 1))
    return set(zip(i.tolist(), j.tolist(), strict=True)), float(d[np.triu_indices(len(positions), 1)].min())


def describe_change(numbers: np.ndarray, positions: np.ndarray, before: set, after: set) -> str:
    """The bonds lost and gained between two graphs, as e.g. 'lost P3-Cl7 2.57 Å; new Br4-Br5 2.86 Å': each atom
    named by its element and its 0-based index in the molecule (the data file's atom order)."""
    from ase.data import chemical_symbols

    def names(pairs: set) -> str:
        return ", ".join(
            f"{chemical_symbols[numbers[i]]}{i}-{chemical_symbols[numbers[j]]}{j} "
            f"{np.linalg.norm(positions[i] - positions[j]):.2f} Å"
            for i, j in sorted(pairs)
        )

    lost, gained = before - after, after - before
    parts = ([f"lost {names(lost)}"] if lost else []) + ([f"new {names(gained)}"] if gained else [])
    return "; ".join(parts)


class BreakWatch:
    """Watches one molecule: its starting bond graph and closest contact, and the first time either fails."""

    def __init__(self, numbers: np.ndarray, positions: np.ndarray) -> None:
        self.numbers = numbers
        self.graph, self.closest = contacts(numbers, positions)
        self.broken: dict | None = None

    def check(self, positions: np.ndarray, t_ps: float) -> None:
        """Record the first break at ``t_ps`` (ps); later calls only track the closest contact (Å)."""
        if self.broken is not None:
            return
        graph, dmin = contacts(self.numbers, positions)
        self.closest = min(self.closest, dmin)
        if graph != self.graph or dmin < MIN_DISTANCE_A:
            why = "contact < 0.6 Å" if dmin < MIN_DISTANCE_A else "bond graph changed"
            detail = describe_change(self.numbers, positions, self.graph, graph) or f"closest {dmin:.2f} Å"
            self.broken = {"t_ps": t_ps, "why": why, "detail": detail}

    def result(self) -> dict:
        b = self.broken or {}
        return {
            "atoms": int(len(self.numbers)),
            "formula": _formula(self.numbers),
            "stable": self.broken is None,
            "first_break_ps": b.get("t_ps"),
            "why": b.get("why", ""),
            "detail": b.get("detail", ""),
            "closest_A": self.closest,
        }


def run_temperature(args: tuple) -> dict:
    """NVT of every molecule at one temperature; returns per-molecule first-break times (ps) and timing."""
    model, molecules, temperature, ps, timestep_fs, record_fs, seed, threads = args
    import torch

    from transip_md.units import ANGSTROM_TO_NM

    torch.set_num_threads(threads)
    numbers = np.concatenate([m.numbers for m in molecules])
    slices, start, positions = [], 0, []
    for k, m in enumerate(molecules):
        centred = (m.positions - m.positions.mean(0)) * ANGSTROM_TO_NM + np.array([k * SPACING_NM, 0.0, 0.0])
        positions.append(centred)
        slices.append(slice(start, start + len(m.numbers)))
        start += len(m.numbers)
    _, integrator, current = openmm_langevin(model, numbers, np.concatenate(positions), temperature, timestep_fs, seed)
    pos0 = current()
    watches = [BreakWatch(m.numbers, pos0[s]) for m, s in zip(molecules, slices, strict=True)]
    steps_per_record, n_records = record_schedule(ps, timestep_fs, record_fs)
    t0 = time.perf_counter()
    for rec in range(1, n_records + 1):
        integrator.step(steps_per_record)
        pos = current()
        for s, watch in zip(slices, watches, strict=True):
            watch.check(pos[s], rec * steps_per_record * timestep_fs / 1000.0)
    wall = time.perf_counter() - t0
    return {
        "temperature": temperature,
        "wall_s": wall,
        "steps": n_records * steps_per_record,
        "ms_per_step": 1000.0 * wall / max(1, n_records * steps_per_record),
        "atoms": int(len(numbers)),
        "molecules": {m.mol_id: w.result() for m, w in zip(molecules, watches, strict=True)},
    }


def run_reference(args: tuple) -> tuple[str, float, dict]:
    """Control: the same check on GFN2-xTB Langevin MD (tblite through ASE; same friction, time step, seed),
    from the molecule's start geometry relaxed with GFN2-xTB. Tells a model fault from a criterion that the
    reference itself trips (e.g. two geminal halogens vibrating inside 1.2 x their covalent radii)."""
    molecule, temperature, ps, timestep_fs, record_fs, seed = args
    atoms, dyn = gfn2_langevin(molecule.numbers, molecule.positions, temperature, timestep_fs, seed)
    watch = BreakWatch(molecule.numbers, atoms.positions)
    steps_per_record, n_records = record_schedule(ps, timestep_fs, record_fs)
    for rec in range(1, n_records + 1):
        dyn.run(steps_per_record)
        watch.check(atoms.positions, rec * steps_per_record * timestep_fs / 1000.0)
        if watch.broken is not None:
            break
    return molecule.mol_id, temperature, {**watch.result(), "ps": ps}


def _formula(numbers: np.ndarray) -> str:
    from ase import Atoms

    return Atoms(numbers=numbers).get_chemical_formula()


def _break_cell(m: dict) -> str:
    return "stable" if m["stable"] else f"{m['first_break_ps']:.2f}: {m['detail']}"


def _reference_cell(m: dict) -> str:
    ref = m.get("reference")
    if ref is None:
        return "-"
    return f"stable {ref['ps']:g} ps" if ref["stable"] else _break_cell(ref)


def write_report(results: list[dict], meta: dict, prefix: Path) -> None:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    temps = [r["temperature"] for r in results]
    control = meta.get("reference_ps", 0) > 0
    per_t = "first break (ps): what changed | closest (Å)" + (" | GFN2-xTB control" if control else "")
    lines = [
        "# MD stability on held-out molecules (OpenMM NVT)",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Model `{meta['model']}`; {meta['ps']} ps per run, Langevin (1/ps), {meta['timestep_fs']} fs, checks every "
        f"{meta['record_fs']} fs; stable = covalent graph (ASE natural cutoffs x {BOND_SCALE}) unchanged and no "
        f"contact < {MIN_DISTANCE_A} Å (atoms named element + 0-based index in the data file's order). "
        "Molecules: held-out split of the shipped data, never trained on.",
    ]
    if control:
        lines.append(
            f"GFN2-xTB control: every molecule the model breaks is rerun with the reference method itself (tblite, "
            f"ASE Langevin, same friction, time step and seed, up to {meta['reference_ps']:g} ps) under the same "
            "check; a break there means the criterion, not the model, is tripped."
        )
    lines += [
        "",
        "| molecule | formula | atoms | " + " | ".join(f"{t:g} K: {per_t}" for t in temps) + " |",
        "|---|---|---|" + ("---|---|---|" if control else "---|---|") * len(temps),
    ]
    for mol_id in results[0]["molecules"]:
        m0 = results[0]["molecules"][mol_id]
        cells = []
        for r in results:
            m = r["molecules"][mol_id]
            cells += [_break_cell(m), f"{m['closest_A']:.2f}"] + ([_reference_cell(m)] if control else [])
        lines.append(f"| {mol_id} | {m0['formula']} | {m0['atoms']} | " + " | ".join(cells) + " |")
    lines.append("")
    for r in results:
        mols = r["molecules"].values()
        n_stable = sum(m["stable"] for m in mols)
        line = (
            f"- {r['temperature']:g} K: {n_stable}/{len(r['molecules'])} stable for {meta['ps']} ps "
            f"({r['atoms']} atoms in one system, {r['ms_per_step']:.1f} ms/step, {r['wall_s']:.0f} s)."
        )
        if control and n_stable < len(r["molecules"]):
            tripped = sum(1 for m in mols if not m["stable"] and not m["reference"]["stable"])
            line += f" The GFN2-xTB reference trips the same check in {tripped} of the {len(mols) - n_stable} breaks."
        lines.append(line)
    prefix.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    from transip_md.data import default_model_path

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(default_model_path()))
    p.add_argument("--data", default=None, help="data set with a held-out split (default: the shipped set)")
    p.add_argument("--molecules", type=int, default=12)
    p.add_argument("--temperatures", type=float, nargs="+", default=[300.0, 600.0])
    p.add_argument("--ps", type=float, default=20.0)
    p.add_argument("--timestep-fs", type=float, default=0.5)
    p.add_argument("--record-fs", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads per temperature process")
    p.add_argument(
        "--reference-ps",
        type=float,
        default=None,
        help="GFN2-xTB control MD (ps) for each molecule the model breaks (0: none; default: --ps)",
    )
    p.add_argument("--output", default="bench/results/md_stability")
    args = p.parse_args(argv)
    if args.reference_ps is None:
        args.reference_ps = args.ps

    from transip_md.model import load_compiled
    from transip_md.train.heldout import heldout_frames
    from transip_md.worker_pool import spawn_pool

    elements = list(load_compiled(args.model).elements)
    frames, held = heldout_frames(args.data)
    molecules = pick_molecules(frames, held, elements, args.molecules, args.seed)
    covered = sorted({int(z) for m in molecules for z in m.numbers})
    missing = sorted(set(elements) - set(covered))
    if missing:
        print(f"warning: no held-out molecule contains elements {missing}", file=sys.stderr)
    jobs = [
        (args.model, molecules, t, args.ps, args.timestep_fs, args.record_fs, args.seed, args.threads)
        for t in args.temperatures
    ]
    with spawn_pool(len(jobs)) as pool:
        results = pool.map(run_temperature, jobs)
        if args.reference_ps > 0:
            by_id = {m.mol_id: m for m in molecules}
            controls = [
                (by_id[mol_id], r["temperature"], args.reference_ps, args.timestep_fs, args.record_fs, args.seed)
                for r in results
                for mol_id, m in r["molecules"].items()
                if not m["stable"]
            ]
            for mol_id, temperature, ref in pool.map(run_reference, controls):
                next(r for r in results if r["temperature"] == temperature)["molecules"][mol_id]["reference"] = ref
    meta = {
        "command": "python bench/md_stability.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": args.model,
        "ps": args.ps,
        "timestep_fs": args.timestep_fs,
        "record_fs": args.record_fs,
        "reference_ps": args.reference_ps,
        "elements_covered": covered,
    }
    write_report(results, meta, Path(args.output))
    print(Path(args.output).with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
