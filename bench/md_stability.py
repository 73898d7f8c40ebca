"""MD stability of a TransIP model on held-out molecules: OpenMM NVT (Langevin) at several temperatures.

A molecule is *stable* when its covalent bond graph (ASE natural cutoffs x 1.2) never changes and no two of its
atoms come closer than 0.6 Å; the report gives, per molecule and temperature, the time to the first break.

All molecules of one temperature run in ONE OpenMM System, 100 Å apart (far beyond the model's cutoff, so they do
not interact), so each MD step is one model call; temperatures run in parallel processes. Molecules are held-out
molecules of the shipped data set's split (never trained on), chosen to cover every element of the model, each
started from its neutral-singlet frame of lowest reference energy, minimised with the model, then given
Maxwell-Boltzmann velocities.

    OMP_NUM_THREADS=1 python bench/md_stability.py --ps 20 --temperatures 300 600 --molecules 12

Writes bench/results/md_stability.md and .json (or --output PREFIX).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPACING_NM = 10.0  # 100 Å between molecules
MIN_DISTANCE_A = 0.6
BOND_SCALE = 1.2


@dataclass
class Molecule:
    mol_id: str
    numbers: np.ndarray
    positions: np.ndarray  # Å
    smiles: str = ""


def pick_molecules(frames, ids, elements: list[int], n: int, seed: int = 0, max_atoms: int = 25) -> list[Molecule]:
    """At least ``n`` held-out neutral-singlet molecules covering ``elements``: for each element (rarest first) the
    smallest held-out molecule containing it, then random held-out molecules of at most ``max_atoms`` atoms."""
    by_mol: dict[str, list[int]] = {}
    for i in ids:
        f = frames[i]
        if int(f.charge) == 0 and int(f.spin) == 1:
            by_mol.setdefault(str(f.mol_id), []).append(i)
    rng = np.random.default_rng(seed)
    names = sorted(by_mol)
    rng.shuffle(names)
    elems = {m: set(frames[by_mol[m][0]].numbers.tolist()) for m in names}
    size = {m: frames[by_mol[m][0]].n_atoms for m in names}
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
    out = []
    for m in chosen:
        best = min(by_mol[m], key=lambda i: frames[i].energy)
        out.append(Molecule(m, frames[best].numbers.copy(), frames[best].positions.copy()))
    return out


def contacts(numbers: np.ndarray, positions: np.ndarray) -> tuple[set[tuple[int, int]], float]:
    """Covalent bonds (i < j; ASE natural cutoffs x BOND_SCALE) and the closest pair distance (Å), from one
    distance matrix."""
    from ase.data import covalent_radii

    r = covalent_radii[numbers] * BOND_SCALE
    d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    i, j = np.nonzero(np.triu(d < r[:, None] + r[None, :], 1))
    return set(zip(i.tolist(), j.tolist(), strict=True)), float(d[np.triu_indices(len(positions), 1)].min())


def run_temperature(args: tuple) -> dict:
    """NVT of every molecule at one temperature; returns per-molecule first-break times (ps) and timing."""
    model, molecules, temperature, ps, timestep_fs, record_fs, seed, threads = args
    import openmm
    import torch
    from ase.data import atomic_masses
    from openmm import unit

    from transip_md.openmm import create_transip_force
    from transip_md.units import ANGSTROM_TO_NM, NM_TO_ANGSTROM

    torch.set_num_threads(threads)
    system = openmm.System()
    numbers = np.concatenate([m.numbers for m in molecules])
    slices, start, positions = [], 0, []
    for k, m in enumerate(molecules):
        for z in m.numbers:
            system.addParticle(float(atomic_masses[z]))
        centred = (m.positions - m.positions.mean(0)) * ANGSTROM_TO_NM + np.array([k * SPACING_NM, 0.0, 0.0])
        positions.append(centred)
        slices.append(slice(start, start + len(m.numbers)))
        start += len(m.numbers)
    system.addForce(create_transip_force(model, atomic_numbers=numbers.tolist(), backend="python"))
    integrator = openmm.LangevinMiddleIntegrator(
        temperature * unit.kelvin, 1.0 / unit.picosecond, timestep_fs * unit.femtosecond
    )
    integrator.setRandomNumberSeed(seed)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(np.concatenate(positions))
    openmm.LocalEnergyMinimizer.minimize(context, 1.0, 200)
    context.setVelocitiesToTemperature(temperature * unit.kelvin, seed)

    def current() -> np.ndarray:
        pos = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        return np.asarray(pos) * NM_TO_ANGSTROM

    pos0 = current()
    start_contacts = [contacts(m.numbers, pos0[s]) for m, s in zip(molecules, slices, strict=True)]
    graphs = [bonds for bonds, _ in start_contacts]
    broken: dict[str, dict] = {}
    closest = {m.mol_id: dmin for m, (_, dmin) in zip(molecules, start_contacts, strict=True)}
    steps_per_record = max(1, int(round(record_fs / timestep_fs)))
    n_records = int(round(ps * 1000.0 / (steps_per_record * timestep_fs)))
    t0 = time.perf_counter()
    for rec in range(1, n_records + 1):
        integrator.step(steps_per_record)
        pos = current()
        t_ps = rec * steps_per_record * timestep_fs / 1000.0
        for m, s, g in zip(molecules, slices, graphs, strict=True):
            if m.mol_id in broken:
                continue
            new, dmin = contacts(m.numbers, pos[s])
            closest[m.mol_id] = min(closest[m.mol_id], dmin)
            if new != g or dmin < MIN_DISTANCE_A:
                why = "contact < 0.6 Å" if dmin < MIN_DISTANCE_A else "bond graph changed"
                broken[m.mol_id] = {"t_ps": t_ps, "why": why, "lost": len(g - new), "new": len(new - g)}
    wall = time.perf_counter() - t0
    return {
        "temperature": temperature,
        "wall_s": wall,
        "steps": n_records * steps_per_record,
        "ms_per_step": 1000.0 * wall / max(1, n_records * steps_per_record),
        "atoms": int(len(numbers)),
        "molecules": {
            m.mol_id: {
                "atoms": int(len(m.numbers)),
                "formula": _formula(m.numbers),
                "stable": m.mol_id not in broken,
                "first_break_ps": broken.get(m.mol_id, {}).get("t_ps"),
                "why": broken.get(m.mol_id, {}).get("why", ""),
                "closest_A": closest[m.mol_id],
            }
            for m in molecules
        },
    }


def _formula(numbers: np.ndarray) -> str:
    from ase import Atoms

    return Atoms(numbers=numbers).get_chemical_formula()


def write_report(results: list[dict], meta: dict, prefix: Path) -> None:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    temps = [r["temperature"] for r in results]
    lines = [
        "# MD stability on held-out molecules (OpenMM NVT)",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Model `{meta['model']}`; {meta['ps']} ps per run, Langevin (1/ps), {meta['timestep_fs']} fs, checks every "
        f"{meta['record_fs']} fs; stable = covalent graph (ASE natural cutoffs x {BOND_SCALE}) unchanged and no "
        f"contact < {MIN_DISTANCE_A} Å. Molecules: held-out split of the shipped data, never trained on.",
        "",
        "| molecule | formula | atoms | "
        + " | ".join(f"{t:g} K: first break (ps) | closest (Å)" for t in temps)
        + " |",
        "|---|---|---|" + "---|---|" * len(temps),
    ]
    for mol_id in results[0]["molecules"]:
        m0 = results[0]["molecules"][mol_id]
        cells = []
        for r in results:
            m = r["molecules"][mol_id]
            cells.append("stable" if m["stable"] else f"{m['first_break_ps']:.2f} ({m['why']})")
            cells.append(f"{m['closest_A']:.2f}")
        lines.append(f"| {mol_id} | {m0['formula']} | {m0['atoms']} | " + " | ".join(cells) + " |")
    lines.append("")
    for r in results:
        n_stable = sum(m["stable"] for m in r["molecules"].values())
        lines.append(
            f"- {r['temperature']:g} K: {n_stable}/{len(r['molecules'])} stable for {meta['ps']} ps "
            f"({r['atoms']} atoms in one system, {r['ms_per_step']:.1f} ms/step, {r['wall_s']:.0f} s)."
        )
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
    p.add_argument("--output", default="bench/results/md_stability")
    args = p.parse_args(argv)

    from transip_md.model import load_compiled
    from transip_md.train.heldout import heldout_frames

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
    with mp.get_context("spawn").Pool(len(jobs)) as pool:
        results = pool.map(run_temperature, jobs)
    meta = {
        "command": "python bench/md_stability.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": args.model,
        "ps": args.ps,
        "timestep_fs": args.timestep_fs,
        "record_fs": args.record_fs,
        "elements_covered": covered,
    }
    write_report(results, meta, Path(args.output))
    print(Path(args.output).with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
