"""Benchmark (not a test): learned vs augment vs none equivariance at three training-set sizes.

Same data (the shipped xTB organics set unless --data), same held-out split of different molecules,
same validation frames (--val-frames of them, an even spread; default all), same number of optimizer steps
and architecture for every run. Reports validation force/energy MAE and
the symmetry error (spread over random rotations) of the EMA weights, as a markdown table
(printed and written to bench/results/equivariance.md) and a PNG plot.

Note on cost: `learned` evaluates every structure twice per step (x and R x), so at equal steps it uses
about twice the compute of `augment`/`none`.

    python bench/equivariance.py --steps 300 --sizes 120,360,1000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from transip_md.train.config import TrainConfig
from transip_md.train.trainer import Trainer

MODES = ("none", "augment", "learned")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--sizes", default="120,360,1000", help="training frames")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument(
        "--val-frames",
        type=int,
        default=0,
        help="validation frames, the same held-out frames for every size (0: all held-out frames)",
    )
    ap.add_argument("--d-model", type=int, default=32)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    from transip_md.data import default_dataset_path

    data = args.data or str(default_dataset_path())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        for mode in MODES:
            cfg = TrainConfig(
                data=[data],
                output=str(out / "runs" / f"{mode}-{size}"),
                equivariance=mode,
                epochs=100000,
                max_steps=args.steps,
                max_frames=size,
                max_val_frames=args.val_frames,
                max_atoms=96,
                lr=3e-3,
                warmup_steps=20,
                threads=args.threads,
                model={
                    "d_model": args.d_model,
                    "n_layers": args.layers,
                    "n_heads": 2,
                    "cutoff": 5.0,
                    "n_rope_freqs": 1,
                    "n_rbf": 32,
                    "rbf_max": 5.0,
                },  # fmt: skip
                symmetry_structures=8,
                symmetry_rotations=8,
                progress=False,
                plots=False,
            )
            t0 = time.time()
            tr = Trainer(cfg)
            hist = tr.fit()["history"][-1]
            zero = 1000 * float(np.mean(np.concatenate([np.abs(tr.frames[i].forces).ravel() for i in tr.val_ids])))
            row = {
                "mode": mode,
                "train_frames": len(tr.train_ids),
                "val_frames": len(tr.val_ids),
                "steps": hist["step"],
                "force_mae": hist["val_force_mae_meV_per_A"],
                "zero_force_mae": zero,
                "energy_mae_per_atom": hist["val_energy_mae_meV_per_atom"],
                "energy_mae": hist["val_energy_mae_meV"],
                "sym_force": hist["val_sym_force_rms_meV_per_A"],
                "sym_energy": hist["val_sym_energy_std_meV"],
                "wall_s": time.time() - t0,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    lines = [
        f"Equivariance benchmark: {args.steps} steps each, d_model={args.d_model}, layers={args.layers}, "
        f"cutoff 5 Å, data {Path(data).name}; validation: the same {rows[0]['val_frames']} frames of held-out "
        "molecules for every size.",
        "",
        "| train frames | mode | force MAE meV/Å (zero-force MAE) | energy MAE meV/atom | energy MAE meV "
        "| sym. error forces meV/Å | sym. error energy meV | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['train_frames']} | {r['mode']} | {r['force_mae']:.1f} ({r['zero_force_mae']:.1f}) "
            f"| {r['energy_mae_per_atom']:.2f} | {r['energy_mae']:.1f} | {r['sym_force']:.2f} "
            f"| {r['sym_energy']:.2f} | {r['wall_s']:.0f} |"
        )
    table = "\n".join(lines)
    print(table)
    (out / "equivariance.md").write_text(table + "\n")
    (out / "equivariance.json").write_text(json.dumps(rows, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for mode in MODES:
        rs = [r for r in rows if r["mode"] == mode]
        x = [r["train_frames"] for r in rs]
        axes[0].plot(x, [r["force_mae"] for r in rs], "o-", label=mode)
        axes[1].plot(x, [r["energy_mae_per_atom"] for r in rs], "o-", label=mode)
        axes[2].plot(x, [r["sym_force"] for r in rs], "o-", label=mode)
    for ax, t in zip(axes, ("val force MAE (meV/Å)", "val energy MAE (meV/atom)", "symmetry error forces (meV/Å)"),
                     strict=True):  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("training frames")
        ax.set_title(t)
        ax.legend()
    axes[2].set_yscale("log")
    fig.tight_layout()
    fig.savefig(out / "equivariance.png", dpi=100)


if __name__ == "__main__":
    main()
