"""Benchmark (not a test): training throughput (frames/s) of the trainer with and without one speed-up, side by side.

``--compare length-groups`` (local models): centres encoded in groups of similar neighbour count
(``TransIP._length_groups``, the model's code) against one batch padded to its longest neighbourhood
(``max_length_groups = 1``, before). Results: ``bench/results/train_throughput_length_groups.md``.

``--compare direct-forces`` (local models): a training step on direct forces (train/direct.py, the first share of a
run with ``--direct-forces``) against a conservative one (forces -dE/dx, a double backward). Results:
``bench/results/train_throughput_direct_forces.md``.

``--compare rotary-spline`` (local models): the rotary encoding as whole-tensor factors x c + (x P) s, queries and keys
in one pass, and the radial splines evaluated in their power basis (one gather per distance, Horner's rule), against
the former code (each of q and k rotated by slices and a concatenation; four gathered spline rows weighted by the
B-spline basis). The same functions (equal to float32 round-off); the bench also times energy + forces of the
eager model on a ~1,000-atom water cluster. Results: ``bench/results/train_throughput_rotary_spline.md``.

``--compare gather``: the radial splines (``SplineRadialBias``: per-pair attention bias, per-token
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
    OMP_NUM_THREADS=1 python bench/train_throughput.py --compare rotary-spline --kinds local --modes augment,learned \
        --inference-atoms 1000 --output bench/results/train_throughput_rotary_spline.md
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from transip_md.model import layers
from transip_md.model.transip import TransIP
from transip_md.train.config import TrainConfig
from transip_md.train.trainer import Trainer


def embedding_gather_forward(self: layers.SplineRadialBias, dist: torch.Tensor) -> torch.Tensor:
    """SplineRadialBias.forward before the index_select gather: the same spline, rows gathered with ``embedding``."""
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


def index_select_gather_forward(self: layers.SplineRadialBias, dist: torch.Tensor) -> torch.Tensor:
    """SplineRadialBias.forward before the power basis: four rows gathered with ``index_select``, basis weights."""
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
    flat = idx.reshape(-1)
    shape = idx.shape + (table.shape[1],)
    out = w0 * table.index_select(0, flat).view(shape)
    out = out + w1 * table.index_select(0, flat + 1).view(shape)
    out = out + w2 * table.index_select(0, flat + 2).view(shape)
    out = out + u3 * table.index_select(0, flat + 3).view(shape)
    return out * (1.0 / 6.0)


def sliced_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """The former rotary encoding: slices x1, x2, rest and a concatenation (inverse: the negative angles)."""
    n = cos.shape[-1]
    x1, x2, rest = x[..., :n], x[..., n : 2 * n], x[..., 2 * n :]
    if inverse:
        return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin, rest], dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos, rest], dim=-1)


def sliced_block_forward(self, h, bias, cos, sin):
    """The former TransformerBlock.forward: q and k rotated one at a time by slices (cos, sin (S, 1, L, 3F))."""
    s, length, d = h.shape
    qkv = self.qkv(self.norm_attn(h)).view(s, length, 3, self.n_heads, self.head_dim)
    q = sliced_rotary(qkv[:, :, 0].transpose(1, 2) * self.scale, cos, sin)
    k = sliced_rotary(qkv[:, :, 1].transpose(1, 2), cos, sin)
    v = qkv[:, :, 2].transpose(1, 2)
    if self.value_rotary:
        v = sliced_rotary(v, cos, sin)
    att = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) + bias, dim=-1)
    o = torch.matmul(att, v)
    if self.value_rotary:
        o = sliced_rotary(o, cos, sin, inverse=True)
    h = h + self.out(o.transpose(1, 2).reshape(s, length, d))
    return h + self.mlp(self.norm_mlp(h))


def sliced_block_first_token(self, h, bias, cos, sin):
    """The former TransformerBlock.forward_first_token (slices)."""
    s, length, d = h.shape
    x = self.norm_attn(h)
    w, b = self.qkv.weight, self.qkv.bias
    q = torch.nn.functional.linear(x[:, :1], w[:d], b[:d]).view(s, 1, self.n_heads, self.head_dim)
    kv = torch.nn.functional.linear(x, w[d:], b[d:]).view(s, length, 2, self.n_heads, self.head_dim)
    q = sliced_rotary(q.transpose(1, 2) * self.scale, cos[:, :, :1], sin[:, :, :1])
    k = sliced_rotary(kv[:, :, 0].transpose(1, 2), cos, sin)
    v = kv[:, :, 1].transpose(1, 2)
    if self.value_rotary:
        v = sliced_rotary(v, cos, sin)
    att = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) + bias[:, :, :1], dim=-1)
    o = torch.matmul(att, v)
    if self.value_rotary:
        o = sliced_rotary(o, cos[:, :, :1], sin[:, :, :1], inverse=True)
    h0 = h[:, :1] + self.out(o.transpose(1, 2).reshape(s, 1, d))
    return h0 + self.mlp(self.norm_mlp(h0))


def sliced_encode(self, tok, pos, logw, cond, centre_only):
    """The former TransIP._encode: cos and sin (S, 1, L, 3F) handed to the blocks."""
    s, length = tok.shape
    h = self.embed(tok) + cond.unsqueeze(1)
    if self.use_token_radial:
        h = h + self.token_radial(layers.safe_norm(pos))
    bias = self.radial_bias(layers.pair_distances(pos)).permute(0, 3, 1, 2)
    bias = bias + logw.view(s, 1, 1, length)
    cos, sin = self.rope(pos)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    for index, block in enumerate(self.blocks):
        if centre_only and index == len(self.blocks) - 1:
            h = sliced_block_first_token(block, h, bias, cos, sin)
        else:
            h = sliced_block_forward(block, h, bias, cos, sin)
    return self.norm_out(h)


@contextlib.contextmanager
def rotary_spline(kind: str, trainer: Trainer):
    """'factors+horner' (the model's code) or 'slices+basis' (the former rotary and spline code) inside."""
    saved = (TransIP._encode, layers.SplineRadialBias.forward)
    if kind == "slices+basis":
        TransIP._encode = sliced_encode
        layers.SplineRadialBias.forward = index_select_gather_forward
    try:
        yield
    finally:
        TransIP._encode, layers.SplineRadialBias.forward = saved


@contextlib.contextmanager
def gather(kind: str, trainer: Trainer):
    """'index_select' (the model's code) or 'embedding' (the former gather) inside the block."""
    original = layers.SplineRadialBias.forward
    # Both sides are the four-row form this comparison measured (the spline is now evaluated in its power basis).
    layers.SplineRadialBias.forward = embedding_gather_forward if kind == "embedding" else index_select_gather_forward
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
    "gather": ("embedding", "index_select", gather, "four-row spline gather by index_select vs embedding (before)"),
    "length-groups": ("one batch", "groups", length_groups, "local centres in length groups (now) vs one padded batch"),
    "direct-forces": ("conservative", "direct", force_kind, "direct-force steps vs conservative (-dE/dx) steps"),
    "rotary-spline": (
        "slices+basis",
        "factors+horner",
        rotary_spline,
        "rotary factors and power-basis splines (now) vs sliced rotary and basis-weighted splines (before)",
    ),
}


def inference_ms(args, trainer: Trainer, before: str, now: str, switch) -> dict[str, float]:
    """ms per energy + forces call of the trainer's (eager) model on a water cluster, both code paths alternating."""
    from openmm_overhead import water_cluster

    from transip_md.model.evaluate import predict

    numbers, pos = water_cluster(args.inference_atoms)
    model = trainer.model.eval()
    seconds: dict[str, list[float]] = {now: [], before: []}
    for repeat in range(args.repeats + 1):
        for name in seconds:
            with switch(name, trainer):
                t0 = time.perf_counter()
                predict(model, numbers, pos, None, None, 0, 1)
                if repeat:  # the first round is a warm-up
                    seconds[name].append(time.perf_counter() - t0)
    return {name: 1e3 * min(s) for name, s in seconds.items()}


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
    ap.add_argument(
        "--inference-atoms", type=int, default=0, help="also time energy + forces on a water cluster this big (0: no)"
    )
    ap.add_argument("--out", default="runs/bench-train-throughput")
    ap.add_argument("--output", default="bench/results/train_throughput.md")
    args = ap.parse_args(argv)
    if args.data is None:
        from transip_md.data import default_dataset_path

        args.data = str(default_dataset_path())
    torch.set_num_threads(args.threads)
    before, now, switch, title = COMPARISONS[args.compare]
    rows = []
    inference: dict[str, float] = {}
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
            if args.inference_atoms and kind == "local" and not inference:
                inference = inference_ms(args, tr, before, now, switch)
                print(inference, flush=True)
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
    if inference:
        lines += [
            "",
            f"Inference (energy + forces, the same local model, eager, float32) on a {args.inference_atoms}-atom water "
            f"cluster, best of {args.repeats} calls after a warm-up: {before} {inference[before]:.0f} ms, {now} "
            f"{inference[now]:.0f} ms per call ({inference[before] / inference[now]:.2f}x).",
        ]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
