"""How close two non-bonded atoms of one held-out molecule come in NVT MD: models against GFN2-xTB itself.

``bench/md_stability.py`` counts a molecule as broken when any two atoms come inside 1.2x their covalent-radius sum,
bonded or not. For a contact across a ring (the P...P pairs of Cl6N3P3) or between geminal halogens, that limit
lies inside the thermal spread of the reference itself; its GFN2-xTB control runs 5 ps, shorter than the model's
20 ps. This script runs one molecule for the full time with each model (OpenMM, Langevin 1/ps, as md_stability)
and with GFN2-xTB (tblite through ASE, Langevin with the same friction, time step and seed), and reports the
distribution of the closest non-bonded pair of the two named elements: relaxed distance, mean, spread, 1st
percentile, minimum, and when and how often it is below the check's limit. Distances in Å, times in ps.

    OMP_NUM_THREADS=1 python bench/pair_contact_md.py --molecule first_5K-2648 --pair P P \\
        --models checkpoints/transip-v2-stage5/model.pt checkpoints/transip-v2-stage7/model.pt --seeds 0 1

Writes bench/results/pair_contact_md.md and .json (or --output PREFIX).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

GFN2 = "GFN2-xTB"


def watched_pairs(numbers: np.ndarray, positions: np.ndarray, zi: int, zj: int) -> list[tuple[int, int]]:
    """Pairs (i < j) of elements ``zi`` and ``zj`` that are NOT bonded in the starting geometry (md_stability's
    covalent graph)."""
    from md_stability import contacts

    bonded, _ = contacts(numbers, positions)
    n = len(numbers)
    return [
        (i, j)
        for i in range(n)
        for j in range(i + 1, n)
        if {int(numbers[i]), int(numbers[j])} == {zi, zj} and (i, j) not in bonded
    ]


def closest(positions: np.ndarray, pairs: list[tuple[int, int]]) -> float:
    """The shortest distance (Å) among ``pairs``."""
    i, j = np.array(pairs).T
    return float(np.linalg.norm(positions[i] - positions[j], axis=-1).min())


def trace(
    advance, positions, pairs: list[tuple[int, int]], ps: float, timestep_fs: float, record_fs: float
) -> tuple[list[float], float]:
    """Run ``ps`` of MD through ``advance(n_steps)``, recording the closest watched distance (Å) of ``positions()``
    every ``record_fs``; returns (series, wall seconds)."""
    from md_stability import record_schedule

    steps, n_records = record_schedule(ps, timestep_fs, record_fs)
    series = []
    t0 = time.perf_counter()
    for _ in range(n_records):
        advance(steps)
        series.append(closest(positions(), pairs))
    return series, time.perf_counter() - t0


def run_model(args: tuple) -> dict:
    """One model: relaxed like the reference (ASE BFGS to 0.01 eV/Å, at most 500 steps), then NVT in OpenMM; the
    closest watched distance every ``record_fs``. (The model starts where the reference starts, from the same
    BFGS relaxation; until 2026-12-07 OpenMM's minimiser also stopped on a small molecule, docs/openmm.md.)"""
    model, numbers, positions, pairs, temperature, ps, timestep_fs, record_fs, seed = args
    import torch
    from md_stability import bfgs_relaxed, openmm_langevin

    from transip_md.ase import TransIPCalculator
    from transip_md.units import ANGSTROM_TO_NM

    torch.set_num_threads(1)
    relaxed = bfgs_relaxed(numbers, positions - positions.mean(0), TransIPCalculator(model), fmax=0.01, steps=500)
    relaxed_nm = relaxed * ANGSTROM_TO_NM
    _, integrator, current = openmm_langevin(model, numbers, relaxed_nm, temperature, timestep_fs, seed, minimise=False)
    relaxed = closest(current(), pairs)
    series, wall = trace(integrator.step, current, pairs, ps, timestep_fs, record_fs)
    return {"engine": model, "seed": seed, "relaxed_A": relaxed, "series_A": series, "wall_s": wall}


def run_reference(args: tuple) -> dict:
    """GFN2-xTB: BFGS-relaxed, then Langevin NVT (ASE, same friction, time step and seed)."""
    numbers, positions, pairs, temperature, ps, timestep_fs, record_fs, seed = args
    from md_stability import gfn2_langevin

    atoms, dyn = gfn2_langevin(numbers, positions, temperature, timestep_fs, seed, fmax=0.01, max_steps=500)
    relaxed = closest(atoms.positions, pairs)  # velocities were drawn after the relaxation: positions unchanged
    series, wall = trace(dyn.run, lambda: atoms.positions, pairs, ps, timestep_fs, record_fs)
    return {"engine": GFN2, "seed": seed, "relaxed_A": relaxed, "series_A": series, "wall_s": wall}


def summarise(run: dict, limit_A: float, record_fs: float) -> dict:
    """Statistics of one run's closest-distance series (Å; times in ps)."""
    d = np.asarray(run["series_A"])
    below = d < limit_A
    return {
        "engine": run["engine"],
        "seed": run["seed"],
        "relaxed_A": run["relaxed_A"],
        "mean_A": float(d.mean()),
        "std_A": float(d.std()),
        "p1_A": float(np.percentile(d, 1)),
        "min_A": float(d.min()),
        "first_below_limit_ps": float((np.argmax(below) + 1) * record_fs / 1000.0) if below.any() else None,
        "fraction_below_limit": float(below.mean()),
        "wall_s": run["wall_s"],
    }


def write_report(rows: list[dict], meta: dict, prefix: Path) -> None:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_suffix(".json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=1))
    lines = [
        f"# Closest non-bonded {meta['pair']} pair of {meta['molecule']} ({meta['formula']}) in NVT MD",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"{meta['ps']:g} ps at {meta['temperature']:g} K per run, Langevin (1/ps), {meta['timestep_fs']:g} fs, the "
        f"closest of {meta['n_pairs']} watched pairs recorded every {meta['record_fs']:g} fs. The md_stability check's "
        f"limit for this pair is {meta['limit_A']:.3f} Å (ASE natural cutoffs x 1.2): below it the pair counts as a "
        "new bond. Start: the molecule's lowest-energy neutral-singlet frame of the held-out split, relaxed by each "
        "engine. Models run in OpenMM (Reference platform); GFN2-xTB through tblite and ASE.",
        "",
        "| engine | seed | relaxed Å | mean Å | std Å | 1st percentile Å | min Å | first below limit, ps | "
        "time below limit |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        first = "never" if r["first_below_limit_ps"] is None else f"{r['first_below_limit_ps']:.2f}"
        lines.append(
            f"| {r['engine']} | {r['seed']} | {r['relaxed_A']:.3f} | {r['mean_A']:.3f} | {r['std_A']:.3f} | "
            f"{r['p1_A']:.3f} | {r['min_A']:.3f} | {first} | {100 * r['fraction_below_limit']:.2f} % |"
        )
    prefix.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:

    from transip_md.data import default_model_path

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--molecule", default="first_5K-2648", help="held-out molecule id (default: Cl6N3P3)")
    p.add_argument("--pair", nargs=2, default=["P", "P"], metavar=("A", "B"), help="element symbols")
    p.add_argument("--models", nargs="+", default=[str(default_model_path())])
    p.add_argument("--no-reference", action="store_true", help="skip the GFN2-xTB runs")
    p.add_argument("--data", default=None, help="data set with a held-out split (default: the shipped set)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--temperature", type=float, default=300.0)
    p.add_argument("--ps", type=float, default=20.0)
    p.add_argument("--timestep-fs", type=float, default=1.0)
    p.add_argument("--record-fs", type=float, default=10.0)
    p.add_argument("--processes", type=int, default=2, help="worker processes (1: run everything here)")
    p.add_argument("--output", default="bench/results/pair_contact_md")
    args = p.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bond_dissociation import check_distance
    from md_stability import _formula, heldout_start

    from transip_md.worker_pool import spawn_pool

    numbers, positions, (zi, zj) = heldout_start("pair_contact_md", args.molecule, "--pair", args.pair, args.data)
    pairs = watched_pairs(numbers, positions, zi, zj)
    if not pairs:
        raise SystemExit(f"pair_contact_md: {args.molecule} has no non-bonded {args.pair[0]}...{args.pair[1]} pair")
    common = (args.temperature, args.ps, args.timestep_fs, args.record_fs)
    model_jobs = [(m, numbers, positions, pairs, *common, s) for m in args.models for s in args.seeds]
    ref_jobs = [] if args.no_reference else [(numbers, positions, pairs, *common, s) for s in args.seeds]
    if args.processes <= 1:  # in this process (also what the tests use: no re-import in a spawned worker)
        runs = [run_reference(j) for j in ref_jobs] + [run_model(j) for j in model_jobs]
    else:
        with spawn_pool(args.processes) as pool:
            ref_async = pool.map_async(run_reference, ref_jobs)  # the slow GFN2-xTB runs start first
            model_runs = pool.map(run_model, model_jobs)
            runs = ref_async.get() + model_runs
    limit = check_distance(zi, zj)
    rows = [summarise(r, limit, args.record_fs) for r in runs]
    meta = {
        "command": "python bench/pair_contact_md.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "molecule": args.molecule,
        "formula": _formula(numbers),
        "pair": f"{args.pair[0]}...{args.pair[1]}",
        "n_pairs": len(pairs),
        "limit_A": limit,
        "temperature": args.temperature,
        "ps": args.ps,
        "timestep_fs": args.timestep_fs,
        "record_fs": args.record_fs,
    }
    write_report(rows, meta, Path(args.output))
    print(Path(args.output).with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
