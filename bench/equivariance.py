"""Benchmark (not a test): does learned equivariance beat rotation augmentation, and which alignment form?

Modes: none / augment / learned-pooled (the paper's form) / learned-atoms (per-atom extension); model kinds
global (all-pairs attention, the paper's setting) and local (cutoff); training-set sizes (frames, spanning
>= 8x by default); seeds. Every run uses the same held-out molecules and the same validation frames
(``--val-frames``, an even spread), the same architecture and optimiser, and trains epoch by epoch until the
validation force MAE (EMA weights) has not improved by ``--min-delta`` (relative) for ``--patience`` epochs,
or ``--max-epochs``, or ``--run-budget`` seconds. The best epoch's EMA weights are scored: force/energy MAE,
symmetry error (energy spread and rotated-back force RMS over random rotations, transip_md.model.symmetry_error),
training time. Results: one JSON line per run (``--out``/equivariance_runs.jsonl; a rerun skips runs already
there, so a study can be resumed or split across machines or processes, e.g. ``--kinds global`` and ``--kinds
local`` side by side); an unfinished run keeps its state after every epoch in ``--out``/in_progress/RUN/ and
continues from there, bit for bit, when the study is started again (the folder is removed when the run is done);
a markdown table with the seed spread and the relative gain of learned over augment at each size
(``equivariance.md``, which also lists the runs of the command not yet finished: part-trained or not started),
learning curves and error-vs-size plots (``equivariance.png``).

    # the study on the shipped data set (47k frames of 3,198 molecules; 48 runs; the local kind, about 4x the
    # cost per epoch, at sizes a CPU can finish; see docs/training.md):
    python bench/equivariance.py --sizes 500,2000,8000 --local-sizes 250,500,2000 --seeds 0,1 \
        --kinds global,local --val-frames 500 --run-budget 10800
    # a < 2 minute check that everything runs (writes to runs/bench-equivariance-smoke):
    python bench/equivariance.py --smoke

`learned` evaluates each structure twice per step (two rotated views), so an epoch costs about twice an
`augment` epoch; the table reports the training time so the comparison at equal compute can be read off.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import math
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch

import transip_md.train.checkpoint as ckpt_mod
import transip_md.train.heldout as sides_module
from transip_md.train.config import TrainConfig
from transip_md.train.metrics import symmetry_metrics
from transip_md.train.trainer import Trainer

MODES = ("none", "augment", "learned-pooled", "learned-atoms")
KINDS = ("global", "local")


_READ_CACHE: dict = {}
_read_frames = sides_module.read_frames


def _cached_read_frames(paths, **kwargs):
    """Read each data set once per process (every run of the study uses the same files; the trainer only
    indexes the frame list). Reading the shipped .extxyz.gz through ase.io.iread takes ~40 s each time."""
    listed = [paths] if isinstance(paths, str | os.PathLike) else paths  # read_frames takes one path or several
    key = (tuple(str(p) for p in listed), repr(sorted(kwargs.items())))
    if key not in _READ_CACHE:
        _READ_CACHE[key] = _read_frames(paths, **kwargs)
    return _READ_CACHE[key]


sides_module.read_frames = _cached_read_frames  # where the trainer reads its data (heldout.training_sides)


def plain_copy(path: str, folder: Path) -> str:
    """A .gz data file decompressed once into ``folder`` (ase's iread seeks backwards in gzip streams, which
    re-decompresses from the start: ~40 s instead of ~2 s to read the shipped set); other files as they are."""
    if not path.endswith(".gz"):
        return path
    plain = folder / Path(path).name[:-3]
    if not plain.exists() or plain.stat().st_mtime < Path(path).stat().st_mtime:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = f"{plain}.{os.getpid()}.tmp"  # processes of a split study may copy at the same time
        with gzip.open(path, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, plain)
    return str(plain)


def append_line(path: Path, line: str) -> None:
    """One ``write`` on an O_APPEND file: processes of a split study (e.g. ``--kinds global`` and ``--kinds
    local`` side by side) can append to the same jsonl without interleaving."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        data = (line + "\n").encode()
        if os.write(fd, data) != len(data):
            raise OSError(f"{path}: short write")
    finally:
        os.close(fd)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="training data (default: the shipped xTB organics set)")
    ap.add_argument("--sizes", default="500,2000,8000", help="training frames per run, comma-separated")
    ap.add_argument("--local-sizes", default=None, help="training frames of the local kind's runs (default: --sizes)")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--kinds", default=",".join(KINDS), help="global and/or local")
    ap.add_argument("--cutoff", type=float, default=5.0, help="Å, local models")
    ap.add_argument("--val-frames", type=int, default=500, help="validation frames (0: every held-out frame)")
    ap.add_argument("--max-epochs", type=int, default=200)
    ap.add_argument("--patience", type=int, default=8, help="epochs without improvement before stopping")
    ap.add_argument("--min-delta", type=float, default=0.005, help="relative improvement that counts")
    ap.add_argument("--run-budget", type=float, default=3600.0, help="seconds of training per run at most")
    ap.add_argument("--total-budget", type=float, default=math.inf, help="seconds for the whole study")
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--max-atoms", type=int, default=128)
    ap.add_argument("--align-weight", type=float, default=1.0)
    ap.add_argument("--sym-structures", type=int, default=8)
    ap.add_argument("--sym-rotations", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (TrainConfig.device)")
    ap.add_argument("--out", default=None, help="results folder (default bench/results; smoke: runs/...)")
    ap.add_argument("--smoke", action="store_true", help="tiny settings, < 2 minutes, not a result")
    ap.add_argument("--report-only", action="store_true", help="table and plot from the runs already in --out")
    args = ap.parse_args(argv)
    if args.smoke:
        args.sizes, args.seeds, args.val_frames = "8,64", "0", 6
        args.max_epochs, args.patience, args.d_model, args.heads = 2, 1, 16, 2
        args.sym_structures, args.sym_rotations, args.max_atoms = 2, 2, 96
        args.out = args.out or "runs/bench-equivariance-smoke"
    args.out = args.out or "bench/results"
    return args


def in_progress_folder(out: Path, kind: str, mode: str, size: int, seed: int) -> Path:
    """Where a run keeps its state until it is recorded in the jsonl."""
    return out / "in_progress" / f"{kind}-{mode}-{size}-s{seed}"


def run_config(args, kind: str, mode: str, size: int, seed: int, data: str, out: Path) -> TrainConfig:
    eq, _, align = mode.partition("-")
    model = {"d_model": args.d_model, "n_layers": args.layers, "n_heads": args.heads, "n_rope_freqs": 2}
    model["cutoff"] = args.cutoff if kind == "local" else None
    if args.smoke:
        model["n_rope_freqs"] = 1
    return TrainConfig(
        data=[data],
        output=str(in_progress_folder(out, kind, mode, size, seed)),  # the unfinished run's state (resume)
        equivariance=eq,
        align=align or "pooled",
        align_weight=args.align_weight,
        epochs=args.max_epochs,
        max_frames=size,
        max_val_frames=args.val_frames,
        max_atoms=args.max_atoms,
        lr=args.lr,
        warmup_steps=50,
        seed=seed,
        split_seed=0,
        threads=args.threads,
        device=args.device,
        model=model,
        symmetry_structures=0,  # measured once, on the best weights
        progress=False,
        plots=False,
    )


STATE_FILE = "study_state.pt"


def _save_state(tr: Trainer, fit: dict) -> None:
    """The trainer's own checkpoint plus the study's bookkeeping, after every epoch (atomic), so a run that is
    killed (a session ends) continues from its last finished epoch when the study is started again."""
    ckpt_mod.save_atomic({**tr._checkpoint(), "study": fit}, Path(tr.cfg.output) / STATE_FILE)


def _load_state(tr: Trainer) -> dict | None:
    """Resume ``tr`` from its run folder's study state; the study's bookkeeping, or None to start afresh."""
    path = Path(tr.cfg.output) / STATE_FILE
    if not path.exists():
        return None
    fit = tr._resume(str(path))["study"]
    print(f"{tr.cfg.output}: resumed after epoch {tr.epoch} ({fit['train_s']:.0f} s trained)", flush=True)
    return fit


def train_until_plateau(tr: Trainer, args) -> dict:
    """Epochs until the validation force MAE stops improving; the best EMA weights end up in ``tr.model``.
    Resumes from the run folder's study state when there is one (the clock continues from its training time)."""
    fit = _load_state(tr) or {
        "best": math.inf, "best_epoch": 0, "best_state": None, "curve": [], "stopped": "max_epochs", "train_s": 0.0
    }  # fmt: skip
    t0 = time.time() - fit["train_s"]
    while tr.epoch < args.max_epochs and fit["stopped"] == "max_epochs":
        train = tr._train_epoch()
        metrics, _ = tr.validate()
        tr.epoch += 1
        mae = metrics["val_force_mae_meV_per_A"]
        fit["curve"].append({"epoch": tr.epoch, "step": tr.step, "time_s": time.time() - t0, "train": train, **metrics})
        if mae < fit["best"] * (1.0 - args.min_delta):
            fit["best"], fit["best_epoch"] = mae, tr.epoch
            fit["best_state"] = copy.deepcopy(tr.ema.shadow)
        if tr.epoch - fit["best_epoch"] >= args.patience:
            fit["stopped"] = "plateau"
        elif time.time() - t0 > args.run_budget:
            fit["stopped"] = "budget"
        fit["train_s"] = time.time() - t0
        _save_state(tr, fit)
    with torch.no_grad():
        for name, p in tr.model.named_parameters():
            p.copy_(fit["best_state"][name])
    return {
        "curve": fit["curve"],
        "best_epoch": fit["best_epoch"],
        "epochs": tr.epoch,
        "train_s": fit["train_s"],
        "stopped": fit["stopped"],
    }


def one_run(args, kind: str, mode: str, size: int, seed: int, data: str, out: Path) -> dict:
    torch.set_num_threads(args.threads)
    tr = Trainer(run_config(args, kind, mode, size, seed, data, out))
    fit = train_until_plateau(tr, args)
    best = next(r for r in fit["curve"] if r["epoch"] == fit["best_epoch"])
    tr.model.eval()
    sym = symmetry_metrics(tr.model, tr.frames, tr.val_ids[: args.sym_structures], args.sym_rotations, seed=seed)
    zero = 1000 * float(np.mean(np.concatenate([np.abs(tr.frames[i].forces).ravel() for i in tr.val_ids])))
    return {
        "kind": kind, "mode": mode, "size": size, "seed": seed,
        "train_frames": len(tr.train_ids), "val_frames": len(tr.val_ids),
        "force_mae": best["val_force_mae_meV_per_A"], "energy_mae_per_atom": best["val_energy_mae_meV_per_atom"],
        "energy_mae": best["val_energy_mae_meV"], "zero_force_mae": zero,
        "sym_energy": sym["sym_energy_std_meV"], "sym_force": sym["sym_force_rms_meV_per_A"],
        "best_epoch": fit["best_epoch"], "epochs": fit["epochs"], "stopped": fit["stopped"],
        "steps": tr.step, "train_s": fit["train_s"], "run_budget_s": args.run_budget,
        "time_to_best_s": best["time_s"], "host": platform.node(), "threads": args.threads, "device": args.device,
        "curve": [{k: r[k] for k in ("epoch", "step", "time_s", "val_force_mae_meV_per_A")} for r in fit["curve"]],
    }  # fmt: skip


def _stat(rows: list[dict], key: str) -> tuple[float, float]:
    vals = np.array([r[key] for r in rows], dtype=float)
    return float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0


#: The study's per-run budget before rows recorded it (every run of the first 16 ran under the default then).
FORMER_RUN_BUDGET_S = 3600.0


def budgets(rows: list[dict], args) -> str:
    """'3600 s (16 runs), 10800 s (5 runs)': the training-time budgets the recorded runs ran under."""
    counts: dict[float, int] = {}
    for r in rows:
        b = float(r.get("run_budget_s", FORMER_RUN_BUDGET_S))
        counts[b] = counts.get(b, 0) + 1
    if not counts:
        return f"{args.run_budget:.0f} s"
    return ", ".join(f"{b:.0f} s ({n} run{'s' if n != 1 else ''})" for b, n in sorted(counts.items()))


def table(rows: list[dict], args, data: str, out: Path) -> str:
    lines = [
        f"Equivariance study: `python bench/equivariance.py {args.command}`; data {Path(data).name}; d_model "
        f"{args.d_model}, {args.layers} layers, {args.heads} heads, local cutoff {args.cutoff} Å; until the "
        f"validation force MAE stops improving (patience {args.patience} epochs, min. relative gain {args.min_delta},"
        f" at most {args.max_epochs} epochs per run; training-time budget per run: {budgets(rows, args)}). "
        "Mean ± standard deviation over "
        "seeds; gain = (augment - learned) / augment of the force MAE.",
        "",
        "| kind | train frames | mode | seeds | force MAE meV/Å | energy MAE meV/atom | sym. E meV | sym. F meV/Å "
        "| best / last epoch (stop) | train s | gain vs augment |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in KINDS:
        for size in sorted({r["size"] for r in rows if r["kind"] == kind}):
            group = {m: [r for r in rows if (r["kind"], r["size"], r["mode"]) == (kind, size, m)] for m in MODES}
            aug = _stat(group["augment"], "force_mae")[0] if group["augment"] else math.nan
            for mode, rs in group.items():
                if not rs:
                    continue
                f, fs = _stat(rs, "force_mae")
                e, es = _stat(rs, "energy_mae_per_atom")
                gain = f"{100 * (aug - f) / aug:+.1f} %" if mode.startswith("learned") and aug == aug else ""
                lines.append(
                    f"| {kind} | {rs[0]['train_frames']} | {mode} | {len(rs)} | {f:.1f} ± {fs:.1f} "
                    f"| {e:.1f} ± {es:.1f} "
                    f"| {_stat(rs, 'sym_energy')[0]:.2f} | {_stat(rs, 'sym_force')[0]:.2f} "
                    f"| {_stat(rs, 'best_epoch')[0]:.0f} / {_stat(rs, 'epochs')[0]:.0f} "
                    f"({'/'.join(sorted({r['stopped'] for r in rs}))}) | {_stat(rs, 'train_s')[0]:.0f} | {gain} |"
                )
    if rows:
        zero, n_val = rows[0]["zero_force_mae"], rows[0]["val_frames"]
        lines += ["", f"Zero-force MAE of the validation frames: {zero:.1f} meV/Å ({n_val} frames)."]
        lines += ["", f"Where the runs ran: {where_ran(rows)}."]
    lines += progress_lines(rows, args, out)
    return "\n".join(lines)


def sizes_of(args, kind: str) -> list[int]:
    """Training-set sizes (frames) of ``kind``'s runs: --local-sizes for the local kind where given, else --sizes."""
    sizes = args.local_sizes if kind == "local" and args.local_sizes else args.sizes
    return [int(s) for s in sizes.split(",")]


def wanted_runs(args) -> list[tuple[str, str, int, int]]:
    """(kind, mode, size, seed) of every run the command's --sizes/--local-sizes/--seeds/--kinds/--modes ask for,
    in run order (smaller sizes first)."""
    kinds = args.kinds.split(",")
    sizes = sorted({size for kind in kinds for size in sizes_of(args, kind)})
    return [
        (kind, mode, size, int(seed))
        for size in sizes
        for seed in args.seeds.split(",")
        for kind in kinds
        if size in sizes_of(args, kind)
        for mode in args.modes.split(",")
    ]


def progress_lines(rows: list[dict], args, out: Path) -> list[str]:
    """What of the asked-for study is done, part-trained (saved state in --out/in_progress) or not started."""
    done = {(r["kind"], r["mode"], r["size"], r["seed"]) for r in rows}
    wanted = wanted_runs(args)
    todo = [key for key in wanted if key not in done]
    if not todo:
        return []
    started, waiting = [], []
    for kind, mode, size, seed in todo:
        state = in_progress_folder(out, kind, mode, size, seed) / STATE_FILE
        name = f"{kind}/{mode}/{size}/s{seed}"
        if state.exists():
            fit = ckpt_mod.load_checkpoint(state)["study"]
            started.append(f"{name} ({len(fit['curve'])} epochs, {fit['train_s']:.0f} s)")
        else:
            waiting.append(name)
    lines = ["", f"**Unfinished study: {len(wanted) - len(todo)} of {len(wanted)} runs done.**"]
    if started:
        lines.append(f"Part-trained (state saved, resumes bit for bit): {'; '.join(started)}.")
    if waiting:
        lines.append(f"Not started: {', '.join(waiting)}.")
    return lines


def where_ran(rows: list[dict]) -> str:
    """'host (device, K threads): n runs; ...' over ``rows`` (runs before the device flag ran on the CPU)."""
    counts: dict[str, int] = {}
    for r in rows:
        key = f"{r['host']} ({r.get('device', 'cpu')}, {r['threads']} thread{'s' if r['threads'] != 1 else ''})"
        counts[key] = counts.get(key, 0) + 1
    return "; ".join(f"{k}: {n} run{'s' if n != 1 else ''}" for k, n in sorted(counts.items()))


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in KINDS if any(r["kind"] == k for r in rows)]
    if not kinds:
        return  # nothing finished yet
    fig, axes = plt.subplots(len(kinds), 3, figsize=(14, 3.8 * len(kinds)), squeeze=False)
    colours = dict(zip(MODES, ("tab:gray", "tab:blue", "tab:red", "tab:orange"), strict=True))
    for row_axes, kind in zip(axes, kinds, strict=True):
        rs = [r for r in rows if r["kind"] == kind]
        for r in rs:  # learning curves, largest size
            if r["size"] == max(x["size"] for x in rs):
                c = r["curve"]
                row_axes[0].plot([p["epoch"] for p in c], [p["val_force_mae_meV_per_A"] for p in c],
                                 color=colours[r["mode"]], alpha=0.8, label=f"{r['mode']} s{r['seed']}")  # fmt: skip
        for mode in MODES:
            ms = sorted({r["size"] for r in rs if r["mode"] == mode})
            if not ms:
                continue
            for ax, key in ((row_axes[1], "force_mae"), (row_axes[2], "sym_force")):
                mean = [_stat([r for r in rs if r["mode"] == mode and r["size"] == s], key) for s in ms]
                x = [next(r["train_frames"] for r in rs if r["size"] == s) for s in ms]
                ax.errorbar(x, [m for m, _ in mean], yerr=[s for _, s in mean], fmt="o-", color=colours[mode],
                            label=mode, capsize=3)  # fmt: skip
        titles = ("val force MAE vs epoch (largest size)", "val force MAE (meV/Å)", "symmetry error forces (meV/Å)")
        for ax, title in zip(row_axes, titles, strict=True):
            ax.set_title(f"{kind}: {title}")
            ax.legend(fontsize=7)
        for ax in row_axes[1:]:
            ax.set_xscale("log")
            ax.set_xlabel("training frames")
        row_axes[0].set_xlabel("epoch")
        row_axes[2].set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None) -> None:
    args = parse_args(argv)
    args.command = " ".join(os.sys.argv[1:]) if argv is None else " ".join(argv)
    from transip_md.data import default_dataset_path

    data = args.data or str(default_dataset_path())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_data = plain_copy(data, Path("runs") / "bench-data")
    jsonl = out / "equivariance_runs.jsonl"
    done = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []
    keys = {(r["kind"], r["mode"], r["size"], r["seed"]) for r in done}
    t_start = time.time()
    for kind, mode, size, seed in [] if args.report_only else wanted_runs(args):
        if (kind, mode, size, seed) in keys:
            continue
        if time.time() - t_start > args.total_budget:
            print(f"total budget spent: stopping before {kind} {mode} {size} s{seed}", flush=True)
            break
        row = one_run(args, kind, mode, size, seed, train_data, out)
        done.append(row)
        append_line(jsonl, json.dumps(row))
        shutil.rmtree(in_progress_folder(out, kind, mode, size, seed))
        print(json.dumps({k: v for k, v in row.items() if k != "curve"}), flush=True)
    md = table(done, args, data, out)
    print(md)
    (out / "equivariance.md").write_text(md + "\n")
    plot(done, out / "equivariance.png")


if __name__ == "__main__":
    main()
