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

A second table lists every scan: the model's and GFN2-xTB's energy at 1.1x, 1.2x and 1.3x. With ``--molecules``
a third table bends the close 1-3 contacts of those molecules: two non-H atoms bonded to one centre (one of them
terminal, e.g. geminal bromines) whose distance is within 1.2x of the MD check's bond distance for the pair; the
terminal atom is rotated in the plane of the angle by -20..+5 degrees, so the table shows what it costs, in the model
and in GFN2-xTB, to bring the pair inside the MD check's criterion (a "new bond" the reference may make too).

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
BENDS_DEG = (-20.0, -15.0, -10.0, -5.0, 0.0, 5.0)  # change of the i-centre-j angle, degrees
NEAR_CHECK = 1.2  # a 1-3 pair is bent when its distance is below this x the MD check's bond distance
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


def check_distance(zi: int, zj: int) -> float:
    """The MD check's bond distance for a pair of elements (Å): ASE natural cutoffs x md_stability.BOND_SCALE."""
    from ase.data import covalent_radii
    from md_stability import BOND_SCALE

    return float(BOND_SCALE * (covalent_radii[zi] + covalent_radii[zj]))


def close_geminal_pairs(numbers: np.ndarray, pos: np.ndarray) -> list[tuple[int, int, int]]:
    """(i, centre, j): non-H atoms i, j bonded to one centre, j terminal (i terminal too, or not), closer than
    NEAR_CHECK x the MD check's bond distance for the pair."""
    from md_stability import contacts

    bonds, _ = contacts(numbers, pos)
    nbrs: dict[int, set[int]] = {k: set() for k in range(len(numbers))}
    for a, b in bonds:
        nbrs[a].add(b)
        nbrs[b].add(a)
    out = []
    for c in range(len(numbers)):
        heavy = sorted(k for k in nbrs[c] if numbers[k] > 1)
        for x, a in enumerate(heavy):
            for b in heavy[x + 1 :]:
                i, j = (a, b) if len(nbrs[b]) == 1 else (b, a)  # j moves: the terminal one
                if len(nbrs[j]) != 1 or j in nbrs[i]:
                    continue
                if np.linalg.norm(pos[i] - pos[j]) < NEAR_CHECK * check_distance(numbers[i], numbers[j]):
                    out.append((i, c, j))
    return out


def bend(atoms, triple: tuple[int, int, int], calc) -> tuple[np.ndarray, np.ndarray]:
    """Energies (eV, relative to the rest angle) and i...j distances (Å) with the i-centre-j angle changed by each
    of BENDS_DEG (negative: it closes); only the terminal atom j moves, in the plane of the angle."""
    i, c, j = triple
    energies, distances = [], []
    for deg in BENDS_DEG:
        a = atoms.copy()
        a.set_angle(i, c, j, deg, add=True)
        a.calc = calc
        energies.append(a.get_potential_energy())
        distances.append(float(a.get_distance(i, j)))
    e = np.array(energies)
    return e - e[BENDS_DEG.index(0.0)], np.array(distances)


def run(
    model_path: str, data: list[str], per_type: int, only: list[str] | None = None
) -> tuple[dict[str, list[dict]], list[dict] | None]:
    """The bond scans by type, and with ``only`` the bend scans of those molecules (else None)."""
    import torch
    from ase import Atoms
    from ase.optimize import BFGS
    from tblite.ase import TBLite

    from transip_md.ase import TransIPCalculator

    torch.set_num_threads(1)
    model = TransIPCalculator(model_path)
    xtb = TBLite(method="GFN2-xTB", charge=0, multiplicity=1, verbosity=0)
    molecules = heldout_molecules(data)
    picked = pick(molecules, per_type, only)  # checks --molecules before any GFN2-xTB work
    relaxed_by_id: dict[str, Atoms] = {}

    def relaxed(mol_id: str, z: np.ndarray, pos: np.ndarray) -> Atoms:
        """The molecule relaxed with GFN2-xTB, once per molecule (scans and bends work on copies)."""
        if mol_id not in relaxed_by_id:
            atoms = Atoms(numbers=z, positions=pos)
            atoms.calc = xtb
            BFGS(atoms, logfile=None).run(fmax=0.05, steps=300)
            relaxed_by_id[mol_id] = atoms
        return relaxed_by_id[mol_id]

    rows: dict[str, list[dict]] = {}
    for name, found in picked.items():
        for mol_id, z, pos, bond in found:
            atoms = relaxed(mol_id, z, pos)
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
    if only is None:
        return rows, None
    named = [m for m in molecules if m[0] in set(only)]
    return rows, bends(named, [relaxed(*m) for m in named], model, xtb)


def bends(molecules, relaxed: list, model, xtb) -> list[dict]:
    """The bend scans of :func:`close_geminal_pairs` in ``molecules`` ((mol_id, numbers, positions)), on their
    GFN2-relaxed geometries ``relaxed`` (ASE Atoms, same order)."""
    from ase.data import chemical_symbols

    out = []
    for (mol_id, z, _), atoms in zip(molecules, relaxed, strict=True):
        for i, c, j in close_geminal_pairs(z, atoms.get_positions()):
            ref, dist = bend(atoms, (i, c, j), xtb)
            pred, _ = bend(atoms, (i, c, j), model)
            out.append(
                {
                    "mol_id": mol_id,
                    "formula": atoms.get_chemical_formula(),
                    "pair": f"{chemical_symbols[z[i]]}-{chemical_symbols[z[c]]}-{chemical_symbols[z[j]]}",
                    "atoms": [int(i), int(c), int(j)],
                    "angle_deg": float(atoms.get_angle(i, c, j)),
                    "check_A": check_distance(z[i], z[j]),
                    "distance_A": dist.tolist(),
                    "gfn2_eV": ref.tolist(),
                    "model_eV": pred.tolist(),
                }
            )
    return out


def write_report(rows: dict, meta: dict, prefix: Path, bent: list[dict] | None = None) -> str:
    """The report (.md, returned) and .json at ``prefix``; ``bent``: the bend scans of ``--molecules`` runs."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    result: dict = {"meta": meta, "rows": rows} | ({} if bent is None else {"bends": bent})
    prefix.with_suffix(".json").write_text(json.dumps(result, indent=1))
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
    if bent is not None:
        lines += _bend_lines(bent)
    text = "\n".join(lines) + "\n"
    prefix.with_suffix(".md").write_text(text)
    return text


def _bend_lines(bent: list[dict]) -> list[str]:
    shown = [d for d in BENDS_DEG if d != 0.0]
    lines = [
        "",
        "Close 1-3 contacts of the named molecules, bent: the pair's distance (Å) and the energy (eV, relative to the "
        "rest angle) of the model / GFN2-xTB with the angle changed by",
        "",
        "| angle | molecule | formula | rest angle | rest distance / MD check Å | "
        + " | ".join(f"{d:+g}°" for d in shown)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(shown),
    ]
    if not bent:
        lines.append("| (none) | | | | |" + " |" * len(shown))
    for b in bent:
        rest = b["distance_A"][BENDS_DEG.index(0.0)]
        cells = [
            f"{b['distance_A'][k]:.2f}: {b['model_eV'][k]:.2f} / {b['gfn2_eV'][k]:.2f}"
            for k, d in enumerate(BENDS_DEG)
            if d != 0.0
        ]
        lines.append(
            f"| {b['pair']} {b['atoms']} | {b['mol_id']} | {b['formula']} | {b['angle_deg']:.1f}° | "
            f"{rest:.2f} / {b['check_A']:.2f} | " + " | ".join(cells) + " |"
        )
    return lines


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
    rows, bent = run(args.model, args.data, args.per_type, args.molecules)
    meta = {
        "command": " ".join(["python bench/bond_dissociation.py", *(sys.argv[1:] if argv is None else argv)]),
        "model": args.model,
        "data": [Path(d).name for d in args.data],
    }
    print(write_report(rows, meta, Path(args.output), bent))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
