"""Relaxed geometry of an alternating A-B ring of one held-out molecule: models against GFN2-xTB itself.

``bench/pair_contact_md.py`` shows where the closest A...A contact across a ring sits in MD; this script shows why:
each engine relaxes the molecule's lowest-energy neutral-singlet held-out frame (ASE BFGS to ``--fmax`` eV/Å) and
reports the ring's mean A-B bond (Å), A-B-A and B-A-B angles (degrees), their sum (720 for a planar six-ring) and
the mean A...A distance (Å). Default: the P3N3 ring of Cl6N3P3.

    OMP_NUM_THREADS=1 python bench/ring_geometry.py --models checkpoints/transip-v2-stage{5,7,8}/model.pt

Writes bench/results/ring_geometry.md and .json (or --output PREFIX).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

GFN2 = "GFN2-xTB"


def ring_geometry(numbers: np.ndarray, positions: np.ndarray, za: int, zb: int) -> dict[str, float]:
    """Mean A-B bond (Å), A-B-A and B-A-B angles (degrees), angle sum and A...A distance (Å) of the ring formed by
    the A-B bonds of md_stability's covalent graph (each ring atom bonded to two of the other element)."""
    from md_stability import contacts

    bonded, _ = contacts(numbers, positions)
    partners: dict[int, list[int]] = {}
    for i, j in bonded:
        if {int(numbers[i]), int(numbers[j])} == {za, zb}:
            partners.setdefault(i, []).append(j)
            partners.setdefault(j, []).append(i)
    ring = {i: p for i, p in partners.items() if len(p) == 2}
    if not ring:
        raise ValueError(f"no atom bonded to exactly two atoms of the other element of {za}-{zb}: no such ring")

    def angle(i: int, centre: int, k: int) -> float:
        u, v = positions[i] - positions[centre], positions[k] - positions[centre]
        return float(np.degrees(np.arccos(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))))

    bonds = [float(np.linalg.norm(positions[i] - positions[j])) for i, p in ring.items() for j in p if i < j]
    at_b = [angle(p[0], i, p[1]) for i, p in ring.items() if numbers[i] == zb]  # A-B-A: centred on B
    at_a = [angle(p[0], i, p[1]) for i, p in ring.items() if numbers[i] == za]  # B-A-B: centred on A
    a_atoms = [i for i in ring if numbers[i] == za]
    aa = [float(np.linalg.norm(positions[i] - positions[k])) for i, k in itertools.combinations(a_atoms, 2)]
    return {
        "bond_A": float(np.mean(bonds)),
        "angle_aba_deg": float(np.mean(at_b)),
        "angle_bab_deg": float(np.mean(at_a)),
        "angle_sum_deg": float(np.sum(at_b) + np.sum(at_a)),
        "aa_A": float(np.mean(aa)),
    }


def write_report(rows: list[dict], meta: dict, prefix: Path) -> None:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_suffix(".json").write_text(json.dumps({"meta": meta, "engines": rows}, indent=1))
    a, b = meta["ring"].split("-")
    lines = [
        f"# Relaxed {meta['ring']} ring of {meta['molecule']} ({meta['formula']})",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Each engine relaxes the molecule's lowest-energy neutral-singlet held-out frame (ASE BFGS to "
        f"{meta['fmax']:g} eV/Å, at most {meta['steps']} steps); means over the ring (a planar six-ring's angles sum "
        "to 720°).",
        "",
        f"| engine | {a}-{b} Å | {a}-{b}-{a} ° | {b}-{a}-{b} ° | angle sum ° | {a}...{a} Å |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['engine']} | {r['bond_A']:.3f} | {r['angle_aba_deg']:.1f} | {r['angle_bab_deg']:.1f} | "
            f"{r['angle_sum_deg']:.1f} | {r['aa_A']:.3f} |"
        )
    prefix.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:

    from transip_md.data import default_model_path

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--molecule", default="first_5K-2648", help="held-out molecule id (default: Cl6N3P3)")
    p.add_argument("--ring", nargs=2, default=["P", "N"], metavar=("A", "B"), help="the ring's two element symbols")
    p.add_argument("--models", nargs="+", default=[str(default_model_path())])
    p.add_argument("--no-reference", action="store_true", help="skip GFN2-xTB")
    p.add_argument("--data", default=None, help="data set with a held-out split (default: the shipped set)")
    p.add_argument("--fmax", type=float, default=0.01, help="eV/Å")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--output", default="bench/results/ring_geometry")
    args = p.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from md_stability import _formula, bfgs_relaxed, heldout_start

    from transip_md.ase import TransIPCalculator

    numbers, start, (za, zb) = heldout_start("ring_geometry", args.molecule, "--ring", args.ring, args.data)
    engines: list[tuple[str, object]] = []
    if not args.no_reference:
        from tblite.ase import TBLite

        engines.append((GFN2, TBLite(method="GFN2-xTB", verbosity=0)))
    engines += [(m, TransIPCalculator(m)) for m in args.models]
    rows = []
    for name, calc in engines:
        positions = bfgs_relaxed(numbers, start, calc, args.fmax, args.steps)
        try:
            rows.append({"engine": name, **ring_geometry(numbers, positions, za, zb)})
        except ValueError as err:
            raise SystemExit(f"ring_geometry: {args.molecule} relaxed by {name}: {err}") from None
    meta = {
        "command": "python bench/ring_geometry.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "molecule": args.molecule,
        "formula": _formula(numbers),
        "ring": f"{args.ring[0]}-{args.ring[1]}",
        "fmax": args.fmax,
        "steps": args.steps,
    }
    write_report(rows, meta, Path(args.output))
    print(Path(args.output).with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
