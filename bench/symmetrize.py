"""Benchmark (not a test): inference-time symmetrisation (transip_md.model.symmetrize) of a trained model.

For the bare model and each frame set: force and energy MAE on the held-out frames of the model's own
validation split (the molecules it never trained on: split of its training data with its val_fraction and
split_seed, read from the model's provenance), the symmetry error (energy spread and rotated-back force RMS
over random rotations, transip_md.model.symmetry_error) and the cost of one energy+force call.

    python bench/symmetrize.py                     # shipped model and data -> bench/results/symmetrize.md
    python bench/symmetrize.py --max-frames 40     # quicker
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from transip_md.model import load_compiled, predict, symmetry_error
from transip_md.model.symmetrize import symmetrize
from transip_md.train.data import frame_to_atoms, read_frames, split
from transip_md.train.metrics import error_sums, metrics_from_sums

#: (label, group, seed of the fixed rotation C; None = axis-aligned)
VARIANTS = (
    ("bare", None, None),
    ("tetrahedral (12)", "tetrahedral", 0),
    ("octahedral, axis-aligned (24)", "octahedral", None),
    ("octahedral (24)", "octahedral", 0),
    ("icosahedral (60)", "icosahedral", 0),
)


def read_plain(path: str) -> list:
    """Frames of ``path``; a .gz file is decompressed to a temporary file first (ase's iread seeks backwards
    in gzip streams, which re-decompresses from the start: 40 s instead of 2 s for the shipped set)."""
    if not path.endswith(".gz"):
        return read_frames([path])[0]
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / Path(path).name[:-3]
        with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return read_frames([str(plain)])[0]


def errors(model, frames, ids) -> dict:
    """Force MAE (meV/Å) and energy MAE (meV, meV/atom) of ``model`` on frames ``ids``, through the engine-facing
    ``predict`` (the symmetrised wrappers are not training modules) and the trainer's own error sums."""
    preds = {}
    for i in ids:
        f = frames[i]
        p = predict(model, f.numbers, f.positions, f.cell, f.pbc, f.charge, f.spin)
        preds[i] = (p.energy, p.forces)
    m = metrics_from_sums(error_sums(frames, preds))
    return {
        "force_mae": m["force_mae_meV_per_A"],
        "energy_mae": m["energy_mae_meV"],
        "energy_mae_per_atom": m["energy_mae_meV_per_atom"],
    }


def cost(model, frame, repeats: int) -> float:
    """Median seconds of one energy+force call on ``frame``."""
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        predict(model, frame.numbers, frame.positions, frame.cell, frame.pbc, frame.charge, frame.spin)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model file (default: the shipped transip-small.pt)")
    ap.add_argument("--data", default=None, help="labelled data (default: the model's training data)")
    ap.add_argument("--max-frames", type=int, default=0, help="held-out frames scored (0: all, an even spread)")
    ap.add_argument("--sym-structures", type=int, default=8)
    ap.add_argument("--sym-rotations", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transip_md.data import default_dataset_path, default_model_path

    model_path = args.model or str(default_model_path())
    base = load_compiled(model_path)
    tc = base.metadata.get("provenance", {}).get("train_config", {})
    data = args.data or (tc.get("data") or [str(default_dataset_path())])[0]
    frames = read_plain(data)
    _, val = split(frames, float(tc.get("val_fraction", 0.1)), int(tc.get("split_seed", 0)))
    if args.max_frames and args.max_frames < len(val):
        val = [val[int(k)] for k in np.linspace(0, len(val) - 1, args.max_frames).round().astype(int)]
    sym_ids = val[:: max(1, len(val) // args.sym_structures)][: args.sym_structures]
    probe = frames[max(val, key=lambda i: frames[i].n_atoms)]
    rows = []
    for label, group, seed in VARIANTS:
        model = base if group is None else symmetrize(base, group, seed)
        t0 = time.time()
        row = {"variant": label, "group": group, "seed": seed, **errors(model, frames, val)}
        sym = [
            symmetry_error(model, frame_to_atoms(frames[i]), args.sym_rotations, seed=k) for k, i in enumerate(sym_ids)
        ]
        row["sym_energy"] = float(np.mean([s["energy_std_meV"] for s in sym]))
        row["sym_force"] = float(np.mean([s["force_rms_meV_per_A"] for s in sym]))
        row["call_s"] = cost(model, probe, args.repeats)
        row["wall_s"] = time.time() - t0
        rows.append(row)
        print(json.dumps(row), flush=True)
    bare = rows[0]["call_s"]
    lines = [
        f"Inference-time symmetrisation of `{Path(model_path).name}` "
        f"(created {base.metadata['provenance'].get('created', '?')},"
        f" {base.metadata['config'].get('cutoff')} Å cutoff) on {len(val)} held-out frames of {Path(data).name} "
        f"(validation split {tc.get('val_fraction', 0.1)}, seed {tc.get('split_seed', 0)}); symmetry error over "
        f"{args.sym_rotations} random rotations of {len(sym_ids)} structures; cost: median energy+force call on a "
        f"{probe.n_atoms}-atom molecule, {args.threads} thread(s), on a shared machine (timings +-30 %). "
        f"`python bench/symmetrize.py {' '.join(sys.argv[1:])}`",
        "",
        "| frames averaged | force MAE meV/Å | energy MAE meV/atom | sym. E std meV | sym. F RMS meV/Å "
        "| call ms | cost x |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['force_mae']:.1f} | {r['energy_mae_per_atom']:.2f} | {r['sym_energy']:.2f} "
            f"| {r['sym_force']:.2f} | {1000 * r['call_s']:.1f} | {r['call_s'] / bare:.1f} |"
        )
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "symmetrize.md").write_text(table + "\n")
    (out / "symmetrize.json").write_text(json.dumps({"model": model_path, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
