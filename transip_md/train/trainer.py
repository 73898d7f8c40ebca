"""The training loop: AdamW, warm-up + cosine, gradient clipping, EMA, validation, checkpoints, data parallel.

Data parallel (``torchrun --nproc_per_node K transip-md train ...``): every process reads the data and
builds the same global batches (seeded per epoch); process r takes structures r, r+K, ... of each global
batch. Each process's loss is its partial sum divided by the GLOBAL counts, and the gradients are summed
with ``all_reduce`` (gloo on CPU, nccl on GPU): the update equals the one-process update for the same
global batch up to floating-point summation order. Gradients are reduced explicitly rather than through
the ``DistributedDataParallel`` wrapper because the learned-equivariance loss calls the network twice per
step and the force loss needs a double backward, two things DDP's bucketed hooks do not support.

Resuming is exact: the batch order and the rotations of epoch e are drawn from generators seeded with
(seed, e), and the checkpoint (written after every epoch) holds the model, EMA, optimizer, scheduler and
python/numpy/torch RNG states. A run killed mid-epoch loses only that epoch.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..model import TransIP, TransIPConfig
from . import checkpoint as ckpt_mod
from .config import TrainConfig
from .data import Frame, TopologyCache, collate, data_hash, make_batches, read_frames, split, statistics
from .losses import RotationTransform, random_rotations, training_loss
from .metrics import error_sums, metrics_from_sums, predict_frames, symmetry_metrics


# ---------------------------------------------------------------------------------------------- helpers
@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return DistInfo(dist.get_rank(), dist.get_world_size())


def _spread(ids: list[int], n: int) -> list[int]:
    if n >= len(ids):
        return list(ids)
    return [ids[int(k)] for k in np.unique(np.linspace(0, len(ids) - 1, n).round().astype(int))]


def fit_reference_energies(frames: list[Frame], ids: list[int], elements: list[int]) -> tuple[np.ndarray, float]:
    """Least-squares per-element energies (eV) on the training frames, and the RMS force (eV/Å).

    E_b ~ sum_z n_bz e_z; elements absent from the training frames get the mean energy per atom.
    """
    col = {z: k for k, z in enumerate(elements)}
    a = np.zeros((len(ids), len(elements)))
    y = np.zeros(len(ids))
    for r, i in enumerate(ids):
        for z in frames[i].numbers:
            a[r, col[int(z)]] += 1
        y[r] = frames[i].energy
    present = a.sum(0) > 0
    refs = np.zeros(len(elements))
    refs[present] = np.linalg.lstsq(a[:, present], y, rcond=None)[0]
    # An element absent from the training frames gets the mean energy per atom (a neutral guess).
    refs[~present] = y.sum() / a.sum()
    f_rms = float(np.sqrt(np.mean(np.concatenate([frames[i].forces.ravel() for i in ids]) ** 2)))
    return refs, f_rms


class EMA:
    """Exponential moving average of the floating-point parameters.

    The decay at update t (1-based) is min(decay, (1 + t) / (10 + t)), so short runs are not dominated by
    the random initial weights.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        for n, p in model.named_parameters():
            self.shadow[n].mul_(d).add_(p.detach(), alpha=1.0 - d)

    @torch.no_grad()
    def swap(self, model: torch.nn.Module) -> None:
        """Exchange the model's parameters with the EMA ones (call twice to restore)."""
        for n, p in model.named_parameters():
            tmp = p.detach().clone()
            p.copy_(self.shadow[n])
            self.shadow[n].copy_(tmp)


def lr_lambda_factory(warmup: int, total: int, min_ratio: float):
    def fn(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return fn


def _all_reduce_sum(x: np.ndarray, info: DistInfo) -> np.ndarray:
    if info.world == 1:
        return x
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    dist.all_reduce(t)
    return t.numpy()


# ---------------------------------------------------------------------------------------------- trainer
class Trainer:
    def __init__(self, cfg: TrainConfig) -> None:
        cfg.check()
        self.cfg = cfg
        self.info = setup_distributed()
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True)
        self.out = Path(cfg.output)
        if self.info.main:
            self.out.mkdir(parents=True, exist_ok=True)
        self._load_data()
        self._build()

    # ------------------------------------------------------------------ setup
    def _load_data(self) -> None:
        cfg = self.cfg
        if not cfg.data:
            raise ValueError("no training data: give --data FILE_OR_FOLDER (extxyz, .db, .aselmdb)")
        elements = cfg.model.get("elements")
        frames, report = read_frames(cfg.data, elements=elements, skip_bad=cfg.skip_bad)
        reports = [report]
        if cfg.val_data:
            val_frames, vreport = read_frames(cfg.val_data, elements=elements, skip_bad=cfg.skip_bad)
            reports.append(vreport)
            train_ids = list(range(len(frames)))
            val_ids = list(range(len(frames), len(frames) + len(val_frames)))
            frames = frames + val_frames
        else:
            train_ids, val_ids = split(frames, cfg.val_fraction, cfg.split_seed)
        self.read_report = {
            key: sum(getattr(r, key) for r in reports) for key in ("files", "frames", "skipped_frames", "skipped_files")
        }
        self.read_report["problems"] = [p for r in reports for p in r.problems]
        skipped = self.read_report["skipped_frames"] + self.read_report["skipped_files"]
        if skipped and self.info.main:
            first = "; ".join(self.read_report["problems"][:3])
            print(
                f"skip_bad: skipped {self.read_report['skipped_frames']} bad frame(s) and "
                f"{self.read_report['skipped_files']} unreadable file(s), listed in data_stats.json: {first}",
                flush=True,
            )
        # evenly spread subsets, so they cover many molecules
        if cfg.max_frames is not None:
            train_ids = _spread(train_ids, cfg.max_frames)
        if cfg.max_val_frames is not None:  # a fixed validation set, whatever the training size
            if cfg.max_val_frames > 0:
                val_ids = _spread(val_ids, cfg.max_val_frames)
        elif cfg.max_frames is not None:
            val_ids = _spread(val_ids, max(1, cfg.max_frames // 4))
        if not train_ids:
            raise ValueError("no training frames after the split")
        self.frames = frames
        self.train_ids = train_ids
        self.val_ids = val_ids
        self.data_hash = data_hash([frames[i] for i in train_ids + val_ids])
        self.stats = statistics([frames[i] for i in train_ids])

    def _build(self) -> None:
        cfg = self.cfg
        mcfg = dict(cfg.model)
        if not mcfg.get("elements"):
            mcfg["elements"] = sorted({int(z) for i in self.train_ids + self.val_ids for z in self.frames[i].numbers})
        mcfg["dtype"] = cfg.dtype
        self.model_config = TransIPConfig.from_dict(mcfg)
        torch.manual_seed(cfg.seed)
        self.model = TransIP(self.model_config)
        refs, f_rms = fit_reference_energies(self.frames, self.train_ids, self.model_config.elements)
        with torch.no_grad():
            self.model.reference_energies.copy_(torch.from_numpy(refs))
            self.model.energy_scale.fill_(max(f_rms, 1e-3))
        dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
        self.transform = (
            RotationTransform(self.model_config.d_model).to(dtype) if cfg.equivariance == "learned" else None
        )
        params = list(self.model.parameters()) + (list(self.transform.parameters()) if self.transform else [])
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr,
        )
        self.steps_per_epoch = len(make_batches(self.train_ids, self.frames, cfg.max_atoms))
        total = cfg.epochs * self.steps_per_epoch
        if cfg.max_steps is not None:
            total = min(total, cfg.max_steps)
        self.total_steps = total
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda_factory(cfg.warmup_steps, total, cfg.min_lr_ratio)
        )
        self.ema = EMA(self.model, cfg.ema_decay)
        self.topologies = TopologyCache(self.frames, self.model_config.cutoff)
        self.epoch = 0  # next epoch to run
        self.step = 0
        self.best = math.inf
        self.history: list[dict[str, Any]] = []
        if cfg.resume:
            self._resume(cfg.resume)

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint(self) -> dict[str, Any]:
        return {
            "format": ckpt_mod.FORMAT,
            "version": ckpt_mod.VERSION,
            "model_config": self.model_config.to_dict(),
            "train_config": self.cfg.to_dict(),
            "model_state": self.model.state_dict(),
            "ema_state": {k: v.clone() for k, v in self.ema.shadow.items()},
            "transform_state": self.transform.state_dict() if self.transform else {},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": ckpt_mod.rng_state(),
            "epoch": self.epoch - 1,
            "step": self.step,
            "best_metric": float(self.best),
            "data_hash": self.data_hash,
            "history": self.history,
        }

    def _resume(self, path: str) -> None:
        if os.path.isdir(path):
            path = os.path.join(path, "last.pt")
        ck = ckpt_mod.load_checkpoint(path)
        if ck["model_config"] != self.model_config.to_dict():
            raise ValueError(f"{path}: checkpoint model config differs from this run's")
        if ck["data_hash"] != self.data_hash:
            raise ValueError(f"{path}: checkpoint was trained on different data (hash mismatch)")
        self.model.load_state_dict(ck["model_state"])
        self.ema.shadow = {k: v.clone() for k, v in ck["ema_state"].items()}
        if self.transform is not None:
            self.transform.load_state_dict(ck["transform_state"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        ckpt_mod.set_rng_state(ck["rng"])
        self.epoch = int(ck["epoch"]) + 1
        self.step = int(ck["step"])
        self.best = float(ck["best_metric"])
        self.history = list(ck["history"])

    # ------------------------------------------------------------------ one epoch
    def _train_epoch(self) -> dict[str, float]:
        cfg, info = self.cfg, self.info
        rng = np.random.default_rng([cfg.seed, self.epoch])
        gen = torch.Generator().manual_seed(int(cfg.seed) * 1_000_003 + self.epoch)
        batches = make_batches(self.train_ids, self.frames, cfg.max_atoms, rng=rng)
        self.model.train()
        sums: dict[str, float] = {}
        n_done = 0
        bar = None
        if cfg.progress and info.main:
            from tqdm import tqdm

            bar = tqdm(total=len(batches), desc=f"epoch {self.epoch + 1}/{cfg.epochs}", leave=False)
        for global_ids in batches:
            if cfg.max_steps is not None and self.step >= cfg.max_steps:
                break
            rot_all = random_rotations(len(global_ids), gen)
            n_atoms = sum(self.frames[i].n_atoms for i in global_ids)
            mine = list(range(info.rank, len(global_ids), info.world))
            self.optimizer.zero_grad(set_to_none=False)
            if mine:
                batch = collate([global_ids[k] for k in mine], self.frames, self.topologies)
                loss, parts = training_loss(
                    self.model, self.transform, batch, cfg.equivariance, rot_all[mine],
                    cfg.energy_weight, cfg.force_weight, cfg.align_weight, len(global_ids), n_atoms,
                )  # fmt: skip
                loss.backward()
                parts["loss"] = float(loss.detach())
            else:
                parts = {}
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            if info.world > 1:
                flat = torch.cat([p.grad.reshape(-1) for p in params])
                dist.all_reduce(flat)
                offset = 0
                for p in params:
                    p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
                    offset += p.numel()
                keys = ["loss", "loss_energy", "loss_force", "loss_align"]
                vals = _all_reduce_sum(np.array([parts.get(k, 0.0) for k in keys]), info)
                parts = {k: float(v) for k, v in zip(keys, vals, strict=True) if k in parts or info.world > 1}
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            self.ema.update(self.model, self.step)
            n_done += 1
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            if bar is not None:
                bar.update()
                bar.set_postfix(loss=f"{parts.get('loss', 0.0):.4g}")
        if bar is not None:
            bar.close()
        return {f"train_{k}": v / max(n_done, 1) for k, v in sums.items()}

    # ------------------------------------------------------------------ validation
    def validate(self, with_predictions: bool = False) -> tuple[dict[str, float], dict]:
        """Metrics of the EMA weights on the validation frames (sharded over processes)."""
        cfg, info = self.cfg, self.info
        self.ema.swap(self.model)
        self.model.eval()
        try:
            mine = self.val_ids[info.rank :: info.world]
            preds = predict_frames(self.model, self.frames, mine, self.topologies, cfg.max_atoms)
            sums = _all_reduce_sum(error_sums(self.frames, preds), info)
            metrics = {f"val_{k}": v for k, v in metrics_from_sums(sums).items()}
            sym_ids = self.val_ids[: cfg.symmetry_structures]
            sym = symmetry_metrics(self.model, self.frames, sym_ids, cfg.symmetry_rotations, seed=cfg.seed)
            metrics.update({f"val_{k}": v for k, v in sym.items()})
        finally:
            self.ema.swap(self.model)
        return metrics, (preds if with_predictions else {})

    # ------------------------------------------------------------------ main loop
    def fit(self) -> dict[str, Any]:
        cfg, info = self.cfg, self.info
        if info.main:
            (self.out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
            (self.out / "data_stats.json").write_text(
                json.dumps(
                    {
                        "train": self.stats,
                        "val_frames": len(self.val_ids),
                        "data_hash": self.data_hash,
                        "read": self.read_report,
                    },
                    indent=1,
                )
            )
        t0 = time.time()
        while self.epoch < cfg.epochs and (cfg.max_steps is None or self.step < cfg.max_steps):
            train_stats = self._train_epoch()
            metrics, _ = self.validate() if self.val_ids else ({}, {})
            row = {"epoch": self.epoch + 1, "step": self.step, "lr": self.scheduler.get_last_lr()[0]}
            row.update(train_stats)
            row.update(metrics)
            row["time_s"] = time.time() - t0
            row = {k: (int(v) if isinstance(v, (int, np.integer)) else float(v)) for k, v in row.items()}
            self.history.append(row)
            self.epoch += 1
            score = metrics.get("val_force_mae_meV_per_A", train_stats.get("train_loss", math.inf))
            is_best = score < self.best
            if is_best:
                self.best = score
            if info.main:
                ck = self._checkpoint()
                ckpt_mod.save_atomic(ck, self.out / "last.pt")
                if is_best:
                    ckpt_mod.save_atomic(ck, self.out / "best.pt")
                self._write_csv()
                if cfg.progress:
                    print(
                        f"epoch {row['epoch']}: loss {row.get('train_loss', float('nan')):.4g} "
                        f"F-MAE {metrics.get('val_force_mae_meV_per_A', float('nan')):.1f} meV/Å "
                        f"E-MAE {metrics.get('val_energy_mae_meV_per_atom', float('nan')):.2f} meV/atom "
                        f"sym-F {metrics.get('val_sym_force_rms_meV_per_A', float('nan')):.2f} meV/Å",
                        flush=True,
                    )
            if info.world > 1:
                dist.barrier()
        result = {"history": self.history, "output": str(self.out)}
        if info.main:
            result["model"] = str(self.finish())
        if info.world > 1:
            dist.barrier()
        return result

    def finish(self) -> Path:
        """Export model.pt (best EMA weights) and draw the plots."""
        best = self.out / "best.pt"
        src = best if best.exists() else self.out / "last.pt"
        path = ckpt_mod.export_checkpoint(src, self.out / "model.pt")
        if self.cfg.plots and self.val_ids:
            from .plots import learning_curves, parity_plots

            learning_curves(self.history, self.out / "learning_curves.png")
            ck = ckpt_mod.load_checkpoint(src)
            model = ckpt_mod.model_from_checkpoint(ck).eval()
            preds = predict_frames(model, self.frames, self.val_ids, self.topologies, self.cfg.max_atoms)
            parity_plots(self.frames, preds, self.out / "parity.png")
        return path

    def _write_csv(self) -> None:
        keys: list[str] = []
        for row in self.history:
            keys += [k for k in row if k not in keys]
        tmp = self.out / "log.csv.tmp"
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            for row in self.history:
                w.writerow(row)
        os.replace(tmp, self.out / "log.csv")


def train(cfg: TrainConfig) -> dict[str, Any]:
    return Trainer(cfg).fit()


__all__ = ["Trainer", "train", "fit_reference_energies", "collate"]
