"""Bond stretching curves of a TransIP model against GFN2-xTB, on held-out molecules, by bond type.

For each bond type (element pair) up to ``--per-type`` held-out molecules holding it are relaxed with GFN2-xTB
(neutral singlet); one such bond is then scaled from 0.9x to 1.5x its relaxed length (the lighter side moves
along the bond, nothing else moves) and the energy change relative to 1.0x is computed with the model and with
GFN2-xTB. Reported per type: the largest |model - GFN2| energy error over the scan (eV), the model's energy
rise from 1.0x to 1.3x next to GFN2's, and whether the model's energy rises at every step from 1.0x to 1.3x
(a bond that a model lets fall apart shows a flat or falling curve there).

    OMP_NUM_THREADS=1 python bench/bond_dissociation.py
    # the bonds of named held-out molecules (e.g. those an MD run broke), every listed type they hold:
    OMP_NUM_THREADS=1 python bench/bond_dissociation.py --molecules first_5K-4554 --output /tmp/scan

A second table lists every scan: the model's and GFN2-xTB's energy at 1.1x, 1.2x and 1.3x.

Writes bench/results/bond_dissociation.md and .json (or --output PREFIX).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

SCALES = (0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5)
RISE_TO = 1.3
BOND_TYPES = (
    ("P", "Cl"),
    ("S", "Cl"),
    ("N", "Cl"),
    ("P", "F"),
    ("S", "F"),
    ("P", "Br"),
    ("S", "Br"),
    ("N", "Br"),
    ("P", "S"),
    ("C", "Cl"),
    ("C", "Br"),
    ("C", "F"),
    ("C", "C"),
    ("C", "H"),
    ("N", "H"),
    ("O", "H"),
)


def heldout_molecules(paths: list[str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(mol_id, numbers, positions of the lowest-energy neutral-singlet frame) of every held-out molecule."""
    from md_stability import lowest_singlet_frames

    from transip_md.train.data import heldout_split, read_frames

    frames, _ = read_frames(paths)
    best = lowest_singlet_frames(frames, heldout_split(frames)[1])
    return [(m, frames[i].numbers.copy(), frames[i].positions.copy()) for m, i in sorted(best.items())]


def pick(
    molecules, per_type: int, only: list[str] | None = None
) -> dict[str, list[tuple[str, np.ndarray, np.ndarray, tuple[int, int]]]]:
    """Per bond type 'A-B': up to ``per_type`` of the smallest molecules holding it, with one such bond.

    ``only``: restrict to these held-out molecule ids (an id that is not a held-out molecule is an error)."""
    from ase.data import atomic_numbers
    from md_stability import contacts  # covalent bonds: ASE natural cutoffs x 1.2, as in the MD check

    if only is not None:
        wanted = set(only)
        missing = sorted(wanted - {m[0] for m in molecules})
        if missing:
            raise SystemExit(f"--molecules: not a held-out molecule of the data: {', '.join(missing)}")
        molecules = [m for m in molecules if m[0] in wanted]
    out: dict[str, list] = {}
    for a, b in BOND_TYPES:
        za, zb = atomic_numbers[a], atomic_numbers[b]
        found = []
        for mol_id, z, pos in sorted(molecules, key=lambda m: len(m[1])):
            hit = next(((i, j) for i, j in sorted(contacts(z, pos)[0]) if {z[i], z[j]} == {za, zb}), None)
            if hit is not None:
                found.append((mol_id, z, pos, hit))
            if len(found) >= per_type:
                break
        if found:
            out[f"{a}-{b}"] = found
    return out


def scan(atoms, bond: tuple[int, int], calc) -> np.ndarray:
    """Energies (eV) along SCALES x the bond length, relative to 1.0x; the lighter atom moves."""
    i, j = bond
    if atoms.numbers[i] < atoms.numbers[j]:
        i, j = j, i  # j moves: the lighter one
    r0 = atoms.get_distance(i, j)
    energies = []
    for s in SCALES:
        c = atoms.copy()
        c.set_distance(i, j, r0 * s, fix=1.0)
        c.calc = calc
        energies.append(c.get_potential_energy())
    e = np.array(energies)
    return e - e[SCALES.index(1.0)]


def run(model_path: str, data: list[str], per_type: int, only: list[str] | None = None) -> dict:
    import torch
    from ase import Atoms
    from ase.optimize import BFGS
    from tblite.ase import TBLite

    from transip_md.ase import TransIPCalculator

    torch.set_num_threads(1)
    model = TransIPCalculator(model_path)
    xtb = TBLite(method="GFN2-xTB", charge=0, multiplicity=1, verbosity=0)
    rows: dict[str, list[dict]] = {}
    for name, found in pick(heldout_molecules(data), per_type, only).items():
        for mol_id, z, pos, bond in found:
            atoms = Atoms(numbers=z, positions=pos)
            atoms.calc = xtb
            BFGS(atoms, logfile=None).run(fmax=0.05, steps=300)
            ref, pred = scan(atoms, bond, xtb), scan(atoms, bond, model)
            k1, k2 = SCALES.index(1.0), SCALES.index(RISE_TO)
            rows.setdefault(name, []).append(
                {
                    "mol_id": mol_id,
                    "formula": atoms.get_chemical_formula(),
                    "r0_A": float(atoms.get_distance(*bond)),
                    "gfn2_eV": ref.tolist(),
                    "model_eV": pred.tolist(),
                    "max_error_eV": float(np.abs(pred - ref).max()),
                    "gfn2_rise_eV": float(ref[k2]),
                    "model_rise_eV": float(pred[k2]),
                    "model_rises": bool(np.all(np.diff(pred[k1 : k2 + 1]) > 0)),
                }
            )
    return rows


def write_report(rows: dict, meta: dict, prefix: Path) -> str:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [
        "# Bond stretching on held-out molecules: model against GFN2-xTB",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Model `{meta['model']}`; data {meta['data']}. Each bond scaled {SCALES[0]}-{SCALES[-1]}x its GFN2-relaxed "
        f"length (neutral singlet, lighter atom moves); energies relative to 1.0x. 'rises' = the model's energy "
        f"goes up at every step from 1.0x to {RISE_TO}x.",
        "",
        f"| bond | molecules | model rises (of n) | model rise to {RISE_TO}x, eV | GFN2 rise, eV | max error, eV |",
        "|---|---|---|---|---|---|",
    ]
    for name, found in rows.items():
        lines.append(
            f"| {name} | {', '.join(r['formula'] for r in found)} | {sum(r['model_rises'] for r in found)}/"
            f"{len(found)} | {np.mean([r['model_rise_eV'] for r in found]):.2f} | "
            f"{np.mean([r['gfn2_rise_eV'] for r in found]):.2f} | {max(r['max_error_eV'] for r in found):.2f} |"
        )
    shown = [x for x in SCALES if 1.0 < x <= RISE_TO]
    lines += [
        "",
        "Every scan: energy (eV, relative to 1.0x) of the model / GFN2-xTB with the bond scaled to",
        "",
        "| bond | molecule | formula | r0 Å | " + " | ".join(f"{x}x" for x in shown) + " |",
        "|---|---|---|---|" + "---|" * len(shown),
    ]
    for name, found in rows.items():
        for r in found:
            cells = [f"{r['model_eV'][SCALES.index(x)]:.2f} / {r['gfn2_eV'][SCALES.index(x)]:.2f}" for x in shown]
            lines.append(f"| {name} | {r['mol_id']} | {r['formula']} | {r['r0_A']:.2f} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    prefix.with_suffix(".md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    from transip_md.data import bond_supplement_path, default_dataset_path, default_model_path

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(default_model_path()))
    p.add_argument(
        "--data",
        nargs="+",
        default=[str(default_dataset_path()), str(bond_supplement_path())],
        help="data with held-out flags (default: the shipped set and the bond supplement)",
    )
    p.add_argument("--per-type", type=int, default=3, help="molecules per bond type")
    p.add_argument(
        "--molecules", nargs="+", default=None, help="held-out molecule ids to scan (default: the smallest per type)"
    )
    p.add_argument("--output", default="bench/results/bond_dissociation")
    args = p.parse_args(argv)
    rows = run(args.model, args.data, args.per_type, args.molecules)
    meta = {
        "command": " ".join(["python bench/bond_dissociation.py", *(sys.argv[1:] if argv is None else argv)]),
        "model": args.model,
        "data": [Path(d).name for d in args.data],
    }
    print(write_report(rows, meta, Path(args.output)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
