"""Benchmark (not a test): training throughput (frames/s) of the trainer with and without one speed-up, side by side.

``--compare length-groups`` (local models): centres encoded in groups of similar neighbour count
(``TransIP._length_groups``, the model's code) against one batch padded to its longest neighbourhood
(``max_length_groups = 1``, before). Results: ``bench/results/train_throughput_length_groups.md``.

``--compare direct-forces`` (local models): a training step on direct forces (train/direct.py, the first share of a
run with ``--direct-forces``) against a conservative one (forces -dE/dx, a double backward). Results:
``bench/results/train_throughput_direct_forces.md``.

``--compare gather`` (default): the radial splines (``SplineRadialBias``: per-pair attention bias, per-token
radial features) gather four table rows per distance. They used ``torch.nn.functional.embedding``; they now use
``index_select``, the same gather (forward values bit for bit equal) whose backward is an ``index_add``, far
cheaper on the CPU than embedding's.

Both code paths run on the same frames in one process, epochs alternating (so both see the same machine load),
for the study's model kinds and objectives; the script reports frames/s and the ratio.

    OMP_NUM_THREADS=1 python bench/train_throughput.py            # ~10 min on one thread
    OMP_NUM_THREADS=1 python bench/train_throughput.py --compare length-groups --kinds local \
        --output bench/results/train_throughput_length_groups.md
    OMP_NUM_THREADS=1 python bench/train_throughput.py --compare direct-forces --kinds local --modes augment \
        --output bench/results/train_throughput_direct_forces.md
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import time
from pathlib import Path

import torch

from transip_md.model import layers
from transip_md.train.config import TrainConfig
from transip_md.train.trainer import Trainer


def embedding_gather_forward(self: layers.SplineRadialBias, dist: torch.Tensor) -> torch.Tensor:
    """The former SplineRadialBias.forward: the same spline, rows gathered with ``embedding``."""
    table = torch.cat([self.coefficients, self.coefficients[-1:].expand(3, -1)], dim=0)
    x = dist * self.inv_spacing
    last = float(self.n_knots - 1)
    x = torch.where(x < last, x, torch.full_like(x, last))
    i = torch.floor(x).detach()
    u = (x - i).unsqueeze(-1)
    idx = i.long()
    u2 = u * u
    u3 = u2 * u
    one_minus = 1.0 - u
    w0 = one_minus * one_minus * one_minus
    w1 = 3.0 * u3 - 6.0 * u2 + 4.0
    w2 = -3.0 * u3 + 3.0 * u2 + 3.0 * u + 1.0
    out = w0 * torch.nn.functional.embedding(idx, table)
    out = out + w1 * torch.nn.functional.embedding(idx + 1, table)
    out = out + w2 * torch.nn.functional.embedding(idx + 2, table)
    out = out + u3 * torch.nn.functional.embedding(idx + 3, table)
    return out * (1.0 / 6.0)


@contextlib.contextmanager
def gather(kind: str, trainer: Trainer):
    """'index_select' (the model's code) or 'embedding' (the former gather) inside the block."""
    original = layers.SplineRadialBias.forward
    if kind == "embedding":
        layers.SplineRadialBias.forward = embedding_gather_forward
    try:
        yield
    finally:
        layers.SplineRadialBias.forward = original


@contextlib.contextmanager
def length_groups(kind: str, trainer: Trainer):
    """'groups' (the model's code) or 'one batch' (every centre padded to the longest neighbourhood) inside."""
    model = trainer.model
    original = model.max_length_groups
    if kind == "one batch":
        model.max_length_groups = 1
    try:
        yield
    finally:
        model.max_length_groups = original


@contextlib.contextmanager
def force_kind(kind: str, trainer: Trainer):
    """'direct' (forces read off the network: direct-force pretraining) or 'conservative' (-dE/dx) steps."""
    trainer.in_direct_phase = lambda: kind == "direct"
    try:
        yield
    finally:
        del trainer.in_direct_phase


#: --compare: (name of the code before, name of the model's code, context manager taking (name, model)).
COMPARISONS = {
    "gather": ("embedding", "index_select", gather, "spline gather by index_select (now) vs embedding (before)"),
    "length-groups": ("one batch", "groups", length_groups, "local centres in length groups (now) vs one padded batch"),
    "direct-forces": ("conservative", "direct", force_kind, "direct-force steps vs conservative (-dE/dx) steps"),
}


def trainer(args, kind: str, mode: str, out: Path) -> Trainer:
    model = {"d_model": args.d_model, "n_layers": 2, "n_heads": 4, "n_rope_freqs": 2}
    model["cutoff"] = args.cutoff if kind == "local" else None
    cfg = TrainConfig(
        data=[args.data] if args.data else [],
        output=str(out / f"{kind}-{mode}"),
        equivariance=mode,
        max_frames=args.frames,
        max_val_frames=8,
        max_atoms=args.max_atoms,
        lr=3e-3,
        threads=args.threads,
        model=model,
        symmetry_structures=0,
        progress=False,
        plots=False,
        direct_forces=0.5 if args.compare == "direct-forces" else 0.0,  # the head exists; force_kind picks the step
    )
    return Trainer(cfg)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="training data (default: the shipped set)")
    ap.add_argument("--compare", default="gather", choices=sorted(COMPARISONS))
    ap.add_argument("--kinds", default="global,local")
    ap.add_argument("--modes", default="augment,learned")
    ap.add_argument("--frames", type=int, default=300, help="training frames per epoch")
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs per gather (alternating)")
    ap.add_argument("--max-atoms", type=int, default=128)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--cutoff", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/bench-train-throughput")
    ap.add_argument("--output", default="bench/results/train_throughput.md")
    args = ap.parse_args(argv)
    if args.data is None:
        from transip_md.data import default_dataset_path

        args.data = str(default_dataset_path())
    torch.set_num_threads(args.threads)
    before, now, switch, title = COMPARISONS[args.compare]
    rows = []
    for kind in args.kinds.split(","):
        for mode in args.modes.split(","):
            tr = trainer(args, kind, mode, Path(args.out))
            frames = len(tr.train_ids)
            tr._train_epoch()  # warm-up (allocator, first-call costs)
            seconds = {now: [], before: []}
            for _ in range(args.repeats):
                for name in seconds:
                    with switch(name, tr):
                        t0 = time.perf_counter()
                        tr._train_epoch()
                        seconds[name].append(time.perf_counter() - t0)
            best = {name: min(s) for name, s in seconds.items()}
            rows.append((kind, mode, frames, frames / best[before], frames / best[now]))
            print(rows[-1], flush=True)
    lines = [
        f"# Training throughput: {title}",
        "",
        f"Command: `{' '.join(['python bench/train_throughput.py', *(sys.argv[1:] if argv is None else argv)])}`",
        f"Host {platform.node()}, {args.threads} thread(s); {args.frames} frames of the shipped set, batches of up to "
        f"{args.max_atoms} atoms, d_model {args.d_model}, 2 layers; one warm-up epoch, then {args.repeats} epochs "
        "of each alternating; best epoch of each. Energy + force loss (conservative forces: a double backward), "
        "optimizer, EMA.",
        "",
        f"| kind | objective | frames | {before} frames/s | {now} frames/s | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for kind, mode, frames, old, new in rows:
        lines.append(f"| {kind} | {mode} | {frames} | {old:.1f} | {new:.1f} | {new / old:.2f}x |")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
