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
import logging
from pathlib import Path

import numpy as np

from .atomic_io import atomic_write

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="main job: short training run on shipped data, evaluation, OpenMM MD")
    p.add_argument("--output", default="runs/demo", help="run folder")
    p.add_argument("--epochs", type=int, default=2, help="epochs of the short training run")
    p.add_argument("--max-frames", type=int, default=300, help="training frames of the short run")
    p.add_argument("--eval-frames", type=int, default=100, help="frames sampled for the evaluation")
    p.add_argument("--md-steps", type=int, default=1000, help="steps of NVT and of NVE (0.5 fs each)")
    p.set_defaults(func=run)


def _sample(data: Path, n: int, out: Path, elements: list[int] | None = None) -> Path:
    """``n`` frames (seeded) of ``data`` made of ``elements``: from held-out molecules when the set flags them."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    from .train.data import frame_to_atoms, read_frames

    frames, _ = read_frames(data)
    ok = [i for i, f in enumerate(frames) if elements is None or set(f.numbers.tolist()) <= set(elements)]
    pool = [i for i in ok if frames[i].heldout] or ok
    idx = np.random.default_rng(0).choice(pool, size=min(n, len(pool)), replace=False)
    atoms = []
    for i in sorted(int(k) for k in idx):
        a = frame_to_atoms(frames[i])
        a.info["mol_id"] = frames[i].mol_id
        a.calc = SinglePointCalculator(a, energy=frames[i].energy, forces=frames[i].forces)
        atoms.append(a)
    with atomic_write(out) as tmp:
        write(tmp, atoms, format="extxyz")
    return out


def _molecule(data: Path, out: Path, elements: list[int] | None = None) -> Path:
    """The first neutral singlet thermal frame with at least 15 atoms of ``elements``, as extxyz."""
    from ase.io import write

    from .train.data import frame_to_atoms, read_frames

    frames, _ = read_frames(data)
    for f in frames:
        known = elements is None or set(f.numbers.tolist()) <= set(elements)
        if (f.charge, f.spin) == (0, 1) and f.n_atoms >= 15 and f.sampler in ("", "thermal") and known:
            with atomic_write(out) as tmp:
                write(tmp, frame_to_atoms(f), format="extxyz")
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
    logger.info("[demo 1/3] short training run on %s -> %s", data.name, out / "train")
    cli(["train", "--output", str(out / "train"), "--epochs", str(args.epochs), "--max-frames", str(args.max_frames)])
    logger.info("[demo 2/3] evaluating the shipped model %s on %d sampled frames", shipped.name, args.eval_frames)
    from .model import load_compiled

    known = load_compiled(shipped).elements  # the shipped model may know fewer elements than the data set
    sample = _sample(data, args.eval_frames, out / "eval-sample.extxyz", known)
    cli(["evaluate", str(shipped), str(sample), "--symmetry-structures", "4", "--symmetry-rotations", "4"])
    logger.info("[demo 3/3] OpenMM MD with the shipped model: NVT 300 K, then NVE")
    mol = _molecule(data, out / "molecule.extxyz", known)
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
    with atomic_write(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0
