"""The training loop: AdamW, warm-up + cosine, gradient clipping, EMA, validation, checkpoints, data parallel.

Data parallel (``torchrun --nproc_per_node K transip-md train ...``): every process reads the data and builds the
same global batches (seeded per epoch); process r takes structures r, r+K, ... of each global batch. Each process's
loss is its partial sum divided by the GLOBAL counts, and the gradients are summed with ``all_reduce`` (gloo on
CPU; nccl with ``device: cuda``, process r on GPU LOCAL_RANK): the update equals the one-process update for the
same global batch up to floating-point summation order. Gradients are reduced explicitly rather than through the
``DistributedDataParallel`` wrapper because the learned-equivariance loss calls the network twice per step and the
force loss needs a double backward, two things DDP's bucketed hooks do not support.

Device (``TrainConfig.device``): the model, alignment network, EMA weights and each batch live on it; data,
topologies, batch order and rotations are made on the CPU, so they are the same as a CPU run's. Checkpoints
load to the CPU and ``model.pt`` is exported from the CPU.

Resuming is exact: the batch order and the rotations of epoch e are drawn from generators seeded with
(seed, e), and the checkpoint (written after every epoch) holds the model, EMA, optimizer, scheduler and
python/numpy/torch RNG states. A run killed mid-epoch loses only that epoch.

Kill points at the end of an epoch: ``last.pt`` is written first and holds the best epoch's weights too;
``best.pt``, ``log.csv`` and ``model.pt`` are derived from it. A kill after any write leaves ``last.pt``
consistent, and the export at the end of a (resumed) run re-derives ``best.pt`` from it, so ``model.pt`` is
always the best epoch's EMA weights. A kill inside a write leaves the previous file intact (atomic writes)
and at most a ``*.tmp`` file, which the next start removes. A run killed before its first checkpoint resumes
from epoch 1.

Messages go through ``logging`` (logger ``transip_md.train.trainer``), from rank 0 only.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from ..atomic_io import atomic_write, stale_temporaries
from ..model import TransIP, TransIPConfig
from . import checkpoint as ckpt_mod
from .baseline import fit_energy_baseline
from .checkpoint import CheckpointError
from .config import ConfigError, TrainConfig, describe_diff, diff_keys
from .covalent_start import CovalentStartError, check_covalent_start, covalent_start_into
from .data import (
    TopologyCache,
    collate,
    data_hash,
    geometry_key,
    geometry_units,
    group_labels,
    make_batches,
    statistics,
)
from .direct import DirectForceHead
from .grow import GrowError, check_growable, grow_into
from .heldout import training_sides
from .losses import ForceLoss, alignment_from_config, draw_rotations, training_loss
from .metrics import error_sums, metrics_from_sums, predict_frames, symmetry_metrics

logger = logging.getLogger(__name__)

#: Files of a run folder that are written atomically (their stale ``*.tmp`` files are removed at start).
RUN_FILES = ("last.pt", "best.pt", "model.pt", "log.csv", "config.json", "data_stats.json")


# ---------------------------------------------------------------------------------------------- helpers
@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    #: where collective operations put their tensors (nccl needs them on the process's GPU)
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def training_device(name: str) -> torch.device:
    """The torch device of TrainConfig.device: "cuda" under torchrun is the process's LOCAL_RANK GPU."""
    if name == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cuda", 0) if name == "cuda" else torch.device(name)


def setup_distributed(device: torch.device) -> DistInfo:
    """Join the torchrun process group (gloo on the CPU, nccl on GPUs); one process: nothing to join."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(device=device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), device)


def _spread(ids: list[int], n: int) -> list[int]:
    if n >= len(ids):
        return list(ids)
    return [ids[int(k)] for k in np.unique(np.linspace(0, len(ids) - 1, n).round().astype(int))]


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


def lr_lambda_factory(warmup: int, total: int, min_ratio: float, time_progress=None):
    """Linear warm-up then cosine decay to ``min_ratio``; ``time_progress()`` (0..1), when given, can only
    advance the decay (a wall-clock budget ends the schedule on time)."""

    def fn(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if time_progress is not None:
            progress = max(progress, min(1.0, time_progress()))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return fn


def _all_reduce_sum(x: np.ndarray, info: DistInfo) -> np.ndarray:
    if info.world == 1:
        return x
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).to(info.device)
    dist.all_reduce(t)
    return t.cpu().numpy()


def _model_config_diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    return describe_diff(a, b, diff_keys(a, b))


# ---------------------------------------------------------------------------------------------- trainer
class Trainer:
    def __init__(self, cfg: TrainConfig) -> None:
        cfg.check()  # the model architecture too, before any data is read
        self.cfg = cfg
        self.by_geometry = cfg.vertical_weight > 0.0  # batch the states of one geometry together
        self.force_loss = ForceLoss(cfg.force_loss, cfg.force_loss_beta)  # the force term of every step
        self.device = training_device(cfg.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.info = setup_distributed(self.device)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True)
        self.out = Path(cfg.output)
        if self.info.main:
            self.out.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temporaries()
        self._load_data()
        self._build()

    def _remove_stale_temporaries(self) -> None:
        for name in RUN_FILES:
            for tmp in stale_temporaries(self.out / name):
                logger.info("removing %s (left by a killed write)", tmp)
                tmp.unlink(missing_ok=True)

    # ------------------------------------------------------------------ setup
    def _load_data(self) -> None:
        cfg = self.cfg
        if not cfg.data:
            raise ConfigError("no training data: give --data FILE_OR_FOLDER (extxyz, .db, .aselmdb)")
        # held-out molecules (the data set's own flag) are never trained on nor used for validation
        frames, train_ids, val_ids, reports = training_sides(cfg)
        self._report_reads(reports)
        # evenly spread subsets, so they cover many molecules
        if cfg.max_frames is not None:
            train_ids = _spread(train_ids, cfg.max_frames)
        if cfg.max_val_frames is not None:  # a fixed validation set, whatever the training size
            if cfg.max_val_frames > 0:
                val_ids = _spread(val_ids, cfg.max_val_frames)
        elif cfg.max_frames is not None:
            val_ids = _spread(val_ids, max(1, cfg.max_frames // 4))
        if not train_ids:
            raise ConfigError("no training frames after the split (more data or a smaller --val-fraction)")
        self.frames = frames
        self.train_ids = train_ids
        self.val_ids = val_ids
        self.data_hash = data_hash([frames[i] for i in train_ids + val_ids])
        self.stats = statistics([frames[i] for i in train_ids])

    def _report_reads(self, reports: list) -> None:
        keys = ("files", "frames", "skipped_frames", "skipped_files")
        self.read_report: dict[str, Any] = {key: sum(getattr(r, key) for r in reports) for key in keys}
        self.read_report["problems"] = [p for r in reports for p in r.problems]
        skipped = self.read_report["skipped_frames"] + self.read_report["skipped_files"]
        if skipped and self.info.main:
            logger.warning(
                "skip_bad: skipped %d bad frame(s) and %d unreadable file(s), listed in data_stats.json: %s",
                self.read_report["skipped_frames"],
                self.read_report["skipped_files"],
                "; ".join(self.read_report["problems"][:3]),
            )

    def _build(self) -> None:
        cfg = self.cfg
        mcfg = dict(cfg.model)
        if not mcfg.get("elements"):
            mcfg["elements"] = sorted({int(z) for i in self.train_ids + self.val_ids for z in self.frames[i].numbers})
        mcfg["dtype"] = cfg.dtype
        self.model_config = TransIPConfig.from_dict(mcfg)
        torch.manual_seed(cfg.seed)
        self.model = TransIP(self.model_config)
        baseline = fit_energy_baseline(self.frames, self.train_ids, self.model_config.elements)
        with torch.no_grad():
            self.model.reference_energies.copy_(torch.from_numpy(baseline.element_energies))
            self.model.energy_scale.fill_(max(baseline.force_rms, 1e-3))
        self.model.state_energy.set_linear(torch.from_numpy(baseline.state_weights))
        if cfg.init_from:
            self._init_from(cfg.init_from)
        self.model.to(self.device)
        dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
        self.transform = alignment_from_config(cfg, self.model_config.d_model, dtype)
        if self.transform is not None:
            self.transform.to(self.device)
        # direct-force pretraining (train/direct.py): a head used only while in_direct_phase(), never exported
        self.direct_head = DirectForceHead(self.model_config.d_model, dtype) if cfg.direct_forces > 0 else None
        if self.direct_head is not None:
            self.direct_head.to(self.device)
        self.direct_over = False  # the conservative phase has begun (it never goes back, also after a resume)
        self._build_optimizer()
        self.ema = EMA(self.model, cfg.ema_decay)
        self.topologies = TopologyCache(self.frames, self.model_config.cutoff)
        if self.by_geometry and self.info.main:
            self._report_vertical_groups()
        self.epoch = 0  # next epoch to run
        self.step = 0
        self.best = math.inf
        self.best_state: dict[str, Any] | None = None  # {epoch, metric, model_state, ema_state}
        self.history: list[dict[str, Any]] = []
        if cfg.resume:
            self._resume(cfg.resume)

    def _report_vertical_groups(self) -> None:
        """How many training frames the vertical-gap loss can use (it needs two states of one geometry)."""
        units = geometry_units(self.train_ids, self.frames)
        grouped = sum(len(u) for u in units if len(u) > 1)
        if grouped == 0:
            logger.warning(
                "vertical_weight %g: no two training frames are one geometry in two charge/spin states (only the "
                "compact .npz format carries geometry ids), so the vertical-gap loss is 0",
                self.cfg.vertical_weight,
            )
        else:
            logger.info(
                "vertical-gap loss: %d of %d training frames in %d geometries with 2-4 states",
                grouped, len(self.train_ids), sum(len(u) > 1 for u in units),
            )  # fmt: skip

    def _init_from(self, path: str) -> None:
        """Fine-tuning start: every weight and buffer (the fitted baseline too) from ``path``'s EMA model."""
        ck = ckpt_mod.load_checkpoint(path)
        old_config, new_config = ck["model_config"], self.model_config.to_dict()
        if self.cfg.init_grow:
            try:
                check_growable(old_config, new_config)
                grow_into(self.model, ckpt_mod.model_from_checkpoint(ck).state_dict(), int(old_config["n_layers"]))
            except GrowError as exc:
                raise CheckpointError(f"{path}: {exc}") from exc
            if self.info.main:
                logger.info(
                    "initial weights: EMA weights of %s (epoch %s, step %s), grown from %d to %d blocks (identity)",
                    path, ck["epoch"], ck["step"], old_config["n_layers"], new_config["n_layers"],
                )  # fmt: skip
            return
        if self.cfg.init_covalent:
            try:
                check_covalent_start(old_config, new_config)
                covalent_start_into(self.model, ckpt_mod.model_from_checkpoint(ck))
            except CovalentStartError as exc:
                raise CheckpointError(f"{path}: {exc}") from exc
            if self.info.main:
                logger.info(
                    "initial weights: EMA weights of %s (epoch %s, step %s), radial splines extended to "
                    "covalent-scaled distances",
                    path, ck["epoch"], ck["step"],
                )  # fmt: skip
            return
        if diff_keys(old_config, new_config) == ["learned_charge_spread"] and new_config["learned_charge_spread"]:
            self._init_with_new_spread(path, ck)
            return
        if old_config != new_config:
            diff = _model_config_diff(old_config, new_config)
            hint = ""
            keys = set(diff_keys(old_config, new_config))
            if keys == {"n_layers"}:
                hint = "; add --init-grow to append the extra blocks as identity maps"
            elif "covalent_scaled_radial" in keys and keys <= {"covalent_scaled_radial", "learned_radii"}:
                hint = "; add --init-covalent to start the covalent-scaled model from these weights"
            raise CheckpointError(f"{path}: --init-from checkpoint has another model config ({diff}){hint}")
        self.model.load_state_dict(ckpt_mod.model_from_checkpoint(ck).state_dict())
        if self.info.main:
            logger.info("initial weights: EMA weights of %s (epoch %s, step %s)", path, ck["epoch"], ck["step"])

    def _init_with_new_spread(self, path: str, ck: dict[str, Any]) -> None:
        """Fine-tuning start with a learned charge/spin spread added: every other weight from ``path``'s EMA
        model; the new spread's last layer is zero, so the model starts at the checkpoint's energies exactly."""
        missing, unexpected = self.model.load_state_dict(ckpt_mod.model_from_checkpoint(ck).state_dict(), strict=False)
        stray = [k for k in missing if not k.startswith("spread.")] + list(unexpected)
        if stray:
            raise CheckpointError(f"{path}: cannot add a learned charge spread to this checkpoint ({stray})")
        if self.info.main:
            logger.info(
                "initial weights: EMA weights of %s (epoch %s, step %s), learned charge/spin spread added (starts "
                "even)", path, ck["epoch"], ck["step"],
            )  # fmt: skip

    def _build_optimizer(self) -> None:
        cfg = self.cfg
        params = list(self.model.parameters()) + (list(self.transform.parameters()) if self.transform else [])
        params += list(self.direct_head.parameters()) if self.direct_head is not None else []
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr,
        )
        self.steps_per_epoch = len(make_batches(self.train_ids, self.frames, cfg.max_atoms, None, self.by_geometry))
        total = cfg.epochs * self.steps_per_epoch
        if cfg.max_steps is not None:
            total = min(total, cfg.max_steps)
        self.total_steps = total
        self.clock_start = time.time()
        budget = cfg.time_budget_s
        # The schedule and the stop rule read one clock value per step (``step_clock``), so a run stopped by the
        # budget has taken its last step at the end of the schedule.
        self.step_clock: float | None = None
        time_progress = None if budget is None else (lambda: (self._now() - self.clock_start) / budget)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda_factory(cfg.warmup_steps, total, cfg.min_lr_ratio, time_progress)
        )

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
            "direct_head_state": self.direct_head.state_dict() if self.direct_head is not None else {},
            "direct_over": self.direct_over,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": ckpt_mod.rng_state(),
            "epoch": self.epoch - 1,
            "step": self.step,
            "best_metric": float(self.best),
            "best": self.best_state,
            "data_hash": self.data_hash,
            "history": self.history,
        }

    def _resume(self, path: str) -> dict | None:
        """Continue from a checkpoint (file or run folder); returns the loaded checkpoint (None: nothing yet)."""
        if os.path.isdir(path):
            path = os.path.join(path, "last.pt")
            if not os.path.exists(path):  # killed before (or during) its first checkpoint: nothing to continue
                if self.info.main:
                    logger.info("%s: no checkpoint yet (killed before its first epoch ended): epoch 1", path)
                return None
        ck = ckpt_mod.load_checkpoint(path)
        if "optimizer" not in ck:
            raise CheckpointError(f"{path}: holds weights only (best.pt); resume from the run folder or its last.pt")
        if ck["model_config"] != self.model_config.to_dict():
            diff = _model_config_diff(ck["model_config"], self.model_config.to_dict())
            raise CheckpointError(f"{path}: checkpoint model config differs from this run's ({diff})")
        if ck["data_hash"] != self.data_hash:
            raise CheckpointError(f"{path}: checkpoint was trained on different data (hash mismatch)")
        self.model.load_state_dict(ck["model_state"])
        self.ema.shadow = {k: v.to(self.device, copy=True) for k, v in ck["ema_state"].items()}
        if self.transform is not None:
            self.transform.load_state_dict(ck["transform_state"])
        if self.direct_head is not None:
            self.direct_head.load_state_dict(ck["direct_head_state"])
        self.direct_over = bool(ck.get("direct_over", False))
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self._apply_lr_schedule()
        ckpt_mod.set_rng_state(ck["rng"])
        self.epoch = int(ck["epoch"]) + 1
        self.step = int(ck["step"])
        self.best = float(ck["best_metric"])
        self.best_state = ck.get("best")
        self.history = list(ck["history"])
        return ck

    def _apply_lr_schedule(self) -> None:
        """After loading a scheduler state: this run's lr and schedule (a resume may change lr, epochs, warm-up)."""
        factor = self.scheduler.lr_lambdas[0](self.scheduler.last_epoch)
        self.scheduler.base_lrs = [self.cfg.lr for _ in self.optimizer.param_groups]
        for group in self.optimizer.param_groups:
            group["initial_lr"] = self.cfg.lr
            group["lr"] = self.cfg.lr * factor
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _record_best(self, score: float) -> bool:
        """Keep the EMA weights of the epoch just finished (``self.epoch - 1``) if ``score`` is the best."""
        if not score < self.best:
            return False
        self.best = score
        self.best_state = {
            "epoch": self.epoch - 1,
            "metric": float(score),
            "model_state": {k: v.clone() for k, v in self.model.state_dict().items()},
            "ema_state": {k: v.clone() for k, v in self.ema.shadow.items()},
        }
        return True

    def _save_epoch(self, is_best: bool) -> None:
        """last.pt first (the truth, with the best weights in it), then what is derived from it."""
        ck = self._checkpoint()
        ckpt_mod.save_atomic(ck, self.out / "last.pt")
        if is_best:
            ckpt_mod.save_atomic(ckpt_mod.best_checkpoint(ck), self.out / "best.pt")
        self._write_csv()

    # ------------------------------------------------------------------ one epoch
    def _train_epoch(self) -> dict[str, float]:
        cfg, info = self.cfg, self.info
        rng = np.random.default_rng([cfg.seed, self.epoch])
        gen = torch.Generator().manual_seed(int(cfg.seed) * 1_000_003 + self.epoch)
        batches = make_batches(self.train_ids, self.frames, cfg.max_atoms, rng=rng, keep_geometries=self.by_geometry)
        self.model.train()
        sums: dict[str, float] = {}
        n_done = 0
        show = cfg.progress and info.main
        desc = f"epoch {self.epoch + 1}/{cfg.epochs}"
        with tqdm(total=len(batches), desc=desc, leave=False, disable=not show) as bar:
            for global_ids in batches:
                if (cfg.max_steps is not None and self.step >= cfg.max_steps) or self.out_of_time(self.step_clock):
                    break
                parts = self._train_step(global_ids, draw_rotations(len(global_ids), gen, cfg.equivariance))
                n_done += 1
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.update()
                bar.set_postfix(loss=f"{parts.get('loss', 0.0):.4g}")
        return {f"train_{k}": v / max(n_done, 1) for k, v in sums.items()}

    def _train_step(self, global_ids: list[int], rot_all: torch.Tensor) -> dict[str, float]:
        """One optimizer step on a global batch (this process's share of it); the loss parts, summed over ranks."""
        cfg, info = self.cfg, self.info
        n_atoms = sum(self.frames[i].n_atoms for i in global_ids)
        mine = self._my_share(global_ids)
        self.optimizer.zero_grad(set_to_none=False)
        parts: dict[str, float] = {}
        if mine:
            batch = collate([global_ids[k] for k in mine], self.frames, self.topologies).to(self.device)
            loss, parts = training_loss(
                self.model, self.transform, batch, cfg.equivariance, rot_all[mine].to(self.device),
                cfg.energy_weight, cfg.force_weight, cfg.align_weight, len(global_ids), n_atoms, cfg.vertical_weight,
                self.direct_head if self.in_direct_phase() else None, self.force_loss,
            )  # fmt: skip
            loss.backward()
            parts["loss"] = float(loss.detach())
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if info.world > 1:
            parts = self._reduce(params, parts)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        self.optimizer.step()
        self.step_clock = time.time()
        self.scheduler.step()
        self.step += 1
        self.ema.update(self.model, self.step)
        return parts

    def _my_share(self, global_ids: list[int]) -> list[int]:
        """Positions in the global batch this process computes: every K-th structure, or with the vertical-gap
        loss every K-th geometry (all its states on one process, so the loss sums exactly as on one process)."""
        world, rank = self.info.world, self.info.rank
        if not self.by_geometry:
            return list(range(rank, len(global_ids), world))
        labels = group_labels([geometry_key(self.frames[i], i) for i in global_ids])
        return [k for k, label in enumerate(labels) if label % world == rank]

    def _reduce(self, params: list[torch.Tensor], parts: dict[str, float]) -> dict[str, float]:
        """Sum the gradients and the loss parts over the processes."""
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
        # the parts one process would report for this configuration (a rank with no structures has none)
        keys = ["loss_energy", "loss_force"]
        if self.cfg.vertical_weight > 0:
            keys.append("loss_vertical")
        if self.cfg.equivariance == "learned":
            keys.append("loss_align")
        keys.append("loss")
        vals = _all_reduce_sum(np.array([parts.get(k, 0.0) for k in keys]), self.info)
        return {k: float(v) for k, v in zip(keys, vals, strict=True)}

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
    def in_direct_phase(self) -> bool:
        """Whether the next step fits direct forces: the schedule's progress (max of steps / total steps and this
        process's time / budget) is below ``direct_forces``; once it is not, it never is again in this run."""
        share = self.cfg.direct_forces
        if share <= 0.0 or self.direct_over:
            return False
        progress = self.step / max(1, self.total_steps)
        if self.cfg.time_budget_s is not None:
            progress = max(progress, (self._now() - self.clock_start) / self.cfg.time_budget_s)
        if self.info.world > 1:  # every rank switches at the same step
            progress = float(_all_reduce_sum(np.array([progress]), self.info)[0]) / self.info.world
        self.direct_over = progress >= share
        return not self.direct_over

    def _now(self) -> float:
        return self.step_clock if self.step_clock is not None else time.time()

    def out_of_time(self, now: float | None = None) -> bool:
        """Whether this process has used its wall-clock budget (``time_budget_s``) at ``now`` (default: now)."""
        budget = self.cfg.time_budget_s
        if budget is None:
            return False
        spent = (time.time() if now is None else now) - self.clock_start >= budget
        if self.info.world > 1:  # every rank stops at the same step
            return bool(_all_reduce_sum(np.array([float(spent)]), self.info)[0] > 0)
        return spent

    def fit(self) -> dict[str, Any]:
        cfg, info = self.cfg, self.info
        if info.main:
            self._write_run_files()
        if self.epoch >= cfg.epochs and info.main:
            logger.info("%s: %d epoch(s) already done (epochs=%d): exporting only", self.out, self.epoch, cfg.epochs)
        t0 = time.time()
        self.clock_start = t0
        while self.epoch < cfg.epochs and (cfg.max_steps is None or self.step < cfg.max_steps):
            # the clock of the last step, as in the batch loop: if the budget ran out during a validation, one more
            # step is taken, so the run still ends with its last step at the end of the schedule (minimum lr)
            if self.out_of_time(self.step_clock):
                break
            self._run_epoch(t0)
            if info.world > 1:
                dist.barrier()
        result: dict[str, Any] = {"history": self.history, "output": str(self.out)}
        if info.main:
            result["model"] = str(self.finish())
            result["best_epoch"] = None if self.best_state is None else int(self.best_state["epoch"]) + 1
        if info.world > 1:
            dist.barrier()
        return result

    def _write_run_files(self) -> None:
        stats = {"train": self.stats, "val_frames": len(self.val_ids), "data_hash": self.data_hash}
        stats["read"] = self.read_report
        for name, obj in (("config.json", self.cfg.to_dict()), ("data_stats.json", stats)):
            with atomic_write(self.out / name) as tmp:
                tmp.write_text(json.dumps(obj, indent=1))

    def _run_epoch(self, t0: float) -> None:
        """Train one epoch, validate, record it and (rank 0) write the checkpoints and log."""
        train_stats = self._train_epoch()
        metrics, _ = self.validate() if self.val_ids else ({}, {})
        row = {"epoch": self.epoch + 1, "step": self.step, "lr": self.scheduler.get_last_lr()[0]}
        direct = self.direct_head is not None and not self.direct_over  # the epoch ended on direct forces
        if self.direct_head is not None:
            row["direct_forces"] = int(direct)
        row.update(train_stats)
        row.update(metrics)
        row["time_s"] = time.time() - t0
        row = {k: (int(v) if isinstance(v, (int, np.integer)) else float(v)) for k, v in row.items()}
        self.history.append(row)
        self.epoch += 1
        # an epoch that ended on direct forces is not a candidate: its conservative forces were not trained yet
        score = math.inf if direct else metrics.get("val_force_mae_meV_per_A", train_stats.get("train_loss", math.inf))
        is_best = self._record_best(score)
        if not self.info.main:
            return
        self._save_epoch(is_best)
        if self.cfg.progress:
            logger.info(
                "epoch %d: loss %.4g F-MAE %.1f meV/Å E-MAE %.2f meV/atom sym-F %.2f meV/Å",
                row["epoch"],
                row.get("train_loss", float("nan")),
                metrics.get("val_force_mae_meV_per_A", float("nan")),
                metrics.get("val_energy_mae_meV_per_atom", float("nan")),
                metrics.get("val_sym_force_rms_meV_per_A", float("nan")),
            )

    def _best_checkpoint(self) -> tuple[dict[str, Any], str]:
        """The best epoch's checkpoint as recorded in last.pt (re-deriving best.pt if a kill left it stale)."""
        last_path = self.out / "last.pt"
        if not last_path.exists():
            raise CheckpointError(f"{last_path}: no checkpoint: no epoch of this run has finished")
        last = ckpt_mod.load_checkpoint(last_path)
        if last.get("best") is not None:
            best_path = ckpt_mod.sync_best(self.out, last)
            return ckpt_mod.best_checkpoint(last), best_path.name
        # a version-1 run: best.pt, else last.pt
        src = self.out / "best.pt" if (self.out / "best.pt").exists() else last_path
        return ckpt_mod.load_checkpoint(src), src.name

    def finish(self) -> Path:
        """Export model.pt (best EMA weights) and draw the plots."""
        ck, source = self._best_checkpoint()
        self._write_csv()  # log.csv follows last.pt, also when a kill came between them
        try:
            path = ckpt_mod.export_loaded(ck, self.out / "model.pt", source)
        except RuntimeError as exc:  # TorchScript compiles from the source files on disk, read at export time
            raise CheckpointError(
                f"{self.out}: training finished and its checkpoints are kept, but compiling model.pt failed ({exc}). "
                "If transip-md was upgraded or edited while this run trained, export with the installed version: "
                f"transip-md export --checkpoint {self.out / source} {self.out / 'model.pt'}"
            ) from exc
        logger.info("%s: exported epoch %d (best validation) from %s", path, int(ck["epoch"]) + 1, source)
        if self.cfg.plots and self.val_ids:
            from .plots import learning_curves, parity_plots

            learning_curves(self.history, self.out / "learning_curves.png")
            model = ckpt_mod.model_from_checkpoint(ck).eval()
            preds = predict_frames(model, self.frames, self.val_ids, self.topologies, self.cfg.max_atoms)
            parity_plots(self.frames, preds, self.out / "parity.png")
        return path

    def _write_csv(self) -> None:
        keys: list[str] = []
        for row in self.history:
            keys += [k for k in row if k not in keys]
        with atomic_write(self.out / "log.csv") as tmp, open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            for row in self.history:
                w.writerow(row)


def train(cfg: TrainConfig) -> dict[str, Any]:
    return Trainer(cfg).fit()


__all__ = ["Trainer", "train", "collate"]
