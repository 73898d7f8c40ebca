"""Intramolecular hydrogen bonds of held-out molecules: TransIP models against GFN2-xTB (neutral singlet).

Why: the held-out acetylurea (CC(=O)NC(N)=O) broke in stage 14's 300 K MD when an NH2 hydrogen closed onto the acetyl
O across the six-membered N-H...O=C ring while keeping its N-H bond (docs/training.md, stage 14). This scan measures
that motif directly. For each held-out molecule of the data with an intramolecular N/O-H...N/O ring
(:func:`transip_md.train.molecules.hbond_pairs`), smallest first: of its (H, donor, acceptor) motifs the one whose
restrained MMFF94/UFF conformer (hydrogen 1.7-2.1 Å from the acceptor;
:func:`transip_md.train.sampling.hbonded_conformer`) has the lowest energy, relaxed with GFN2-xTB (BFGS, 0.05 eV/Å).
Molecules whose hydrogen bond opens in that relaxation (H...A above 2.6 Å: a ring the strain forbids) are listed and
not scanned; the ``--n`` smallest with a formed hydrogen bond are, by two scans, energies relative to the minimum (eV):

- push: the hydrogen moved straight towards the acceptor to H...A = 1.8 ... 1.0 Å (its donor bond stretches: the start
  of a proton transfer; GFN2-xTB rises all the way where no tautomer is near);
- squeeze: donor (with its H atoms) and acceptor brought together to D...A = 2.6 ... 2.2 Å.

Reported per model: the mean and largest |model - GFN2| over all scan points, and the "false wells": push scans where
the model's energy falls by more than 0.1 eV from its maximum towards 1.0 Å while GFN2-xTB's does not (the model
offers the hydrogen a place next to the acceptor that the reference does not). Several models run side by side on the
same geometries. Writes PREFIX.md and PREFIX.json (default bench/results/hbond_scan).

    OMP_NUM_THREADS=1 python bench/hbond_scan.py --models checkpoints/transip-v2-stage12/model.pt \\
        checkpoints/transip-v2-stage14/model.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

PUSH_A = (1.8, 1.6, 1.4, 1.3, 1.2, 1.1, 1.0)
SQUEEZE_A = (2.6, 2.5, 2.4, 2.3, 2.2)
FALSE_WELL_EV = 0.1
#: The hydrogen bond counts as formed at the GFN2-xTB minimum below this H...A distance (Å).
FORMED_A = 2.6


def heldout_motif_molecules(paths: list[str]) -> list[tuple[str, str]]:
    """(mol_id, smiles) of the held-out molecules of ``paths`` with a hydrogen-bond ring motif, smallest first."""
    from rdkit import Chem

    from transip_md.train.data import load_compact
    from transip_md.train.molecules import hbond_pairs

    found: dict[str, tuple[int, str, str]] = {}
    for path in paths:
        a = load_compact(path)
        for mol_id, smi, held, nat in zip(a["mol_id"], a["mol_smiles"], a["mol_heldout"], a["mol_natoms"], strict=True):
            if held and str(smi) not in found and hbond_pairs(Chem.MolFromSmiles(str(smi))):
                found[str(smi)] = (int(nat), str(mol_id), str(smi))
    return [(mol_id, smi) for _, mol_id, smi in sorted(found.values())]


def start_geometry(smiles: str, xtb) -> tuple[object, np.ndarray, tuple[int, int, int], bool]:
    """(rdkit molecule with explicit H, GFN2-xTB-relaxed positions Å, (h, d, a), hydrogen bond still formed) from the
    H-bonded conformer of the molecule's most natural motif: of every (H, donor, acceptor), the one whose restrained
    conformer has the lowest MMFF94/UFF energy."""
    from ase import Atoms
    from ase.optimize import BFGS

    from transip_md.train.sampling import embed, hbond_triples, hbonded_conformer

    mol, _ = embed(smiles, 10, seed=0)
    candidates = [(hbonded_conformer(mol, h, a), (h, d, a)) for h, d, a in hbond_triples(mol)]
    (pos, _), (h, d, a) = min(candidates, key=lambda c: c[0][1])
    atoms = Atoms(numbers=[at.GetAtomicNum() for at in mol.GetAtoms()], positions=pos)
    atoms.calc = xtb
    BFGS(atoms, logfile=None).run(fmax=0.05, steps=300)
    formed = bool(atoms.get_distance(h, a) < FORMED_A)
    return mol, atoms.positions.copy(), (h, d, a), formed


def scan_geometries(mol, pos: np.ndarray, triple: tuple[int, int, int]) -> dict[str, list[tuple[float, np.ndarray]]]:
    """The push and squeeze geometries (target distance Å, positions Å) that move atoms closer than they are."""
    from transip_md.train.sampling import push_hydrogen, squeeze_hbond

    h, d, a = triple
    push = [(r, push_hydrogen(pos, h, a, r).positions) for r in PUSH_A if r < np.linalg.norm(pos[h] - pos[a])]
    d_a = np.linalg.norm(pos[d] - pos[a])
    squeeze = [(r, squeeze_hbond(mol, pos, d, a, r).positions) for r in SQUEEZE_A if r < d_a]
    return {"push": push, "squeeze": squeeze}


def gfn2():
    """A fresh GFN2-xTB calculator (neutral singlet): each SCF starts from its own guess, since a wavefunction
    carried over from a distant geometry can fail to converge (measured on the push scans)."""
    from tblite.ase import TBLite

    return TBLite(method="GFN2-xTB", charge=0, multiplicity=1, verbosity=0)


def energies(numbers: np.ndarray, geometries: list[np.ndarray], calc=None) -> np.ndarray:
    """Energies (eV) of ``geometries`` with ``calc`` (None: a fresh GFN2-xTB calculator for each)."""
    from ase import Atoms

    out = []
    for pos in geometries:
        atoms = Atoms(numbers=numbers, positions=pos)
        atoms.info.update(charge=0, spin=1)
        atoms.calc = calc if calc is not None else gfn2()
        out.append(atoms.get_potential_energy())
    return np.array(out)


def false_well(curve: np.ndarray) -> bool:
    """The curve (push order, start first) falls by more than FALSE_WELL_EV from its maximum to its end."""
    return bool(len(curve) > 1 and curve.max() - curve[-1] > FALSE_WELL_EV)


def run(models: list[str], data: list[str], n: int) -> dict:
    import torch

    from transip_md.ase import TransIPCalculator

    torch.set_num_threads(1)
    calcs = {m: TransIPCalculator(m) for m in models}
    rows, skipped = [], []
    for mol_id, smiles in heldout_motif_molecules(data):
        if len(rows) >= n:
            break
        mol, pos, triple, formed = start_geometry(smiles, gfn2())
        h_a = float(np.linalg.norm(pos[triple[0]] - pos[triple[2]]))
        if not formed:
            skipped.append({"mol_id": mol_id, "smiles": smiles, "start_h_a_A": h_a})
            continue
        numbers = np.array([at.GetAtomicNum() for at in mol.GetAtoms()])
        row = {"mol_id": mol_id, "smiles": smiles, "atoms": int(len(numbers)), "h_d_a": [int(x) for x in triple]}
        row["start_h_a_A"] = h_a
        scans = scan_geometries(mol, pos, triple)
        # the start, then every scan geometry: one energy each per method, every scan relative to that start
        everything = [pos] + [g for geoms in scans.values() for _, g in geoms]
        energy = {"gfn2_eV": energies(numbers, everything)}
        energy.update({m: energies(numbers, everything, calc) for m, calc in calcs.items()})
        first = 1
        for kind, geoms in scans.items():
            rows_of_kind = slice(first, first + len(geoms))
            row[kind] = {"target_A": [r for r, _ in geoms]}
            row[kind].update({key: (e[rows_of_kind] - e[0]).tolist() for key, e in energy.items()})
            first += len(geoms)
        rows.append(row)
    return {"rows": rows, "not_formed": skipped}


def summarise(result: dict, models: list[str]) -> dict[str, dict]:
    out = {}
    for m in models:
        errors, wells = [], []
        for row in result["rows"]:
            for kind in ("push", "squeeze"):
                ref, pred = np.array(row[kind]["gfn2_eV"]), np.array(row[kind][m])
                errors.extend(np.abs(pred - ref).tolist())
            ref, pred = np.array([0.0, *row["push"]["gfn2_eV"]]), np.array([0.0, *row["push"][m]])
            if false_well(pred) and not false_well(ref):
                wells.append(row["mol_id"])
        out[m] = {
            "mean_abs_error_eV": float(np.mean(errors)) if errors else float("nan"),
            "max_abs_error_eV": float(np.max(errors)) if errors else float("nan"),
            "false_wells": wells,
        }
    return out


def write_report(result: dict, meta: dict, prefix: Path) -> str:
    models = meta["models"]
    summary = summarise(result, models)
    lines = [
        "# Intramolecular hydrogen bonds: push and squeeze scans against GFN2-xTB",
        "",
        f"Command: `{meta['command']}`  ",
        f"Data: {', '.join(meta['data'])}; the {len(result['rows'])} smallest held-out molecules with an N/O-H...N/O "
        "ring motif whose hydrogen bond holds at the GFN2-xTB minimum (bench/hbond_scan.py says how the scans are "
        "made). Energies in eV relative to that minimum. Not scanned (the bond opened in the relaxation): "
        + (", ".join(f"{r['mol_id']} ({r['start_h_a_A']:.2f} Å)" for r in result["not_formed"]) or "none")
        + ".",
        "",
        "| model | mean abs error eV | max abs error eV | false wells (push) |",
        "|---|---|---|---|",
    ]
    for m in models:
        s = summary[m]
        wells = ", ".join(s["false_wells"]) or "none"
        lines.append(f"| {m} | {s['mean_abs_error_eV']:.3f} | {s['max_abs_error_eV']:.3f} | {wells} |")
    lines += [
        "",
        "Per molecule: the energy at the shortest push (H...A) and squeeze (D...A) distance, GFN2-xTB then each model.",
        "",
        "| molecule | SMILES | atoms | H...A start Å | push to | GFN2 | models | squeeze to | GFN2 | models |",
    ]
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for row in result["rows"]:
        cells = []
        for kind in ("push", "squeeze"):
            if row[kind]["target_A"]:
                cells += [
                    f"{row[kind]['target_A'][-1]:.1f}",
                    f"{row[kind]['gfn2_eV'][-1]:.2f}",
                    " / ".join(f"{row[kind][m][-1]:.2f}" for m in models),
                ]
            else:
                cells += ["-", "-", "-"]
        lines.append(
            f"| {row['mol_id']} | `{row['smiles']}` | {row['atoms']} | {row['start_h_a_A']:.2f} | "
            + " | ".join(cells)
            + " |"
        )
    text = "\n".join(lines) + "\n"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_suffix(".md").write_text(text)
    prefix.with_suffix(".json").write_text(json.dumps({"meta": meta, "summary": summary, **result}, indent=1))
    return text


def main(argv: list[str] | None = None) -> int:
    from transip_md.data import default_dataset_path, default_model_path

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=[str(default_model_path())])
    p.add_argument("--data", nargs="+", default=[str(default_dataset_path())], help="data with held-out flags")
    p.add_argument("--n", type=int, default=12, help="molecules (the smallest with a formed hydrogen bond)")
    p.add_argument("--output", default="bench/results/hbond_scan")
    args = p.parse_args(argv)
    result = run(args.models, args.data, args.n)
    meta = {
        "command": " ".join(["python bench/hbond_scan.py", *(sys.argv[1:] if argv is None else argv)]),
        "models": args.models,
        "data": [Path(d).name for d in args.data],
    }
    print(write_report(result, meta, Path(args.output)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
