"""``transip-md demo``: the main job on the embedded default, in a few minutes on 2 CPU cores.

1. trains a short run on the shipped GFN2-xTB data (``transip-md train``), which writes a compiled model;
2. evaluates the shipped pretrained model on a sample of the shipped data (``transip-md evaluate``);
3. runs OpenMM MD of a molecule from the data with the pretrained model (``transip-md md``): Langevin NVT
   at 300 K, then NVE from the final NVT structure, and reports the NVE total-energy fluctuation.
Everything goes through the public commands, so the demo exercises what users run.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="main job: short training run on shipped data, evaluation, OpenMM MD")
    p.add_argument("--output", default="runs/demo", help="run folder")
    p.add_argument("--epochs", type=int, default=2, help="epochs of the short training run")
    p.add_argument("--max-frames", type=int, default=300, help="training frames of the short run")
    p.add_argument("--eval-frames", type=int, default=100, help="frames sampled for the evaluation")
    p.add_argument("--md-steps", type=int, default=1000, help="steps of NVT and of NVE (0.5 fs each)")
    p.set_defaults(func=run)


def _sample(data: Path, n: int, out: Path) -> Path:
    from ase.io import read, write

    frames = read(data, index=":")
    idx = np.random.default_rng(0).choice(len(frames), size=min(n, len(frames)), replace=False)
    write(out, [frames[i] for i in sorted(idx)], format="extxyz")
    return out


def _molecule(data: Path, out: Path) -> Path:
    """The first neutral singlet with at least 15 atoms, as extxyz with its charge/spin."""
    from ase.io import iread, write

    for atoms in iread(data, index=":"):
        if atoms.info.get("charge", 0) == 0 and atoms.info.get("spin", 1) == 1 and len(atoms) >= 15:
            clean = atoms.copy()
            clean.info = {"charge": 0, "spin": 1}
            write(out, clean, format="extxyz")
            return out
    raise RuntimeError(f"{data}: no neutral singlet molecule with >= 15 atoms")


def _energy_stats(path: Path) -> dict:
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    key = next(k for k in rows[0] if k.lower().startswith("total"))
    total = np.array([float(r[key]) for r in rows])
    return {
        "column": key,
        "n": len(total),
        "std_kJ_per_mol": float(total.std()),
        "drift_kJ_per_mol": float(total[-1] - total[0]),
    }


def run(args: argparse.Namespace) -> int:
    from .cli import main as cli
    from .data import default_dataset_path, default_model_path

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    data = default_dataset_path()
    shipped = default_model_path()
    print(f"[demo 1/3] short training run on {data.name} -> {out / 'train'}", flush=True)
    cli(["train", "--output", str(out / "train"), "--epochs", str(args.epochs), "--max-frames", str(args.max_frames)])
    print(f"[demo 2/3] evaluating the shipped model {shipped.name} on {args.eval_frames} sampled frames", flush=True)
    sample = _sample(data, args.eval_frames, out / "eval-sample.extxyz")
    cli(["evaluate", str(shipped), str(sample), "--symmetry-structures", "4", "--symmetry-rotations", "4"])
    print("[demo 3/3] OpenMM MD with the shipped model: NVT 300 K, then NVE", flush=True)
    mol = _molecule(data, out / "molecule.extxyz")
    common = ["--model", str(shipped), "--timestep", "0.5", "--steps", str(args.md_steps), "--report-interval", "10"]
    cli(
        [
            "md",
            str(mol),
            *common,
            "--integrator",
            "langevin",
            "--csv",
            str(out / "nvt.csv"),
            "--trajectory",
            str(out / "nvt.dcd"),
            "--output",
            str(out / "nvt-final.pdb"),
            "--minimize",
            "100",
        ]
    )
    cli(
        [
            "md",
            str(out / "nvt-final.pdb"),
            *common,
            "--integrator",
            "verlet",
            "--csv",
            str(out / "nve.csv"),
            "--trajectory",
            str(out / "nve.dcd"),
        ]
    )
    summary = {"training_run": str(out / "train"), "nve": _energy_stats(out / "nve.csv")}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0
