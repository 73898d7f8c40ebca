"""Checkpoints: plain dicts of tensors and primitives (``torch.load(weights_only=True)``), written atomically.

Keys of ``last.pt`` (the run's state; version 2): format, version, model_config, train_config, model_state,
ema_state (EMA of the model's floating parameters), transform_state (learned mode), optimizer, scheduler, rng
(python/numpy/torch states), epoch (last finished, 0-based), step, best_metric, data_hash, history, and
``best`` = {epoch, metric, model_state, ema_state}: the weights of the best epoch so far.

``last.pt`` is the single source of truth: ``best.pt`` (weights only, see :func:`best_checkpoint`) and
``model.pt`` are derived from it, so a kill between any two writes leaves a state that :func:`sync_best`
and the trainer's export repair without re-running anything.
"""

from __future__ import annotations

import os
import pickle
import random
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic_io import atomic_write

FORMAT = "transip-md-checkpoint"
VERSION = 2
#: Keys a checkpoint must have to be loaded at all (weights-only best.pt files included).
REQUIRED_KEYS = ("model_config", "model_state", "epoch")


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable, foreign or inconsistent; the message names the file."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist."""


def save_atomic(obj: dict[str, Any], path: str | os.PathLike) -> None:
    """torch.save through :func:`transip_md.atomic_io.atomic_write` (never a torn file)."""
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)


def _unreadable_reason(path: str, exc: Exception) -> str:
    """Why ``torch.load`` failed, in words that never suggest unpickling (no weights_only=False advice)."""
    if os.path.getsize(path) == 0:
        return "empty file"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            if any("/code/" in n for n in zf.namelist()):
                return "a TorchScript archive, e.g. a compiled model file; a checkpoint is a torch.save dict"
    if isinstance(exc, pickle.UnpicklingError):
        return "it holds Python objects other than tensors and plain values, which transip-md never unpickles"
    return f"truncated or corrupt: {type(exc).__name__}"


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a trainer checkpoint with ``weights_only=True``; raise :class:`CheckpointError` naming ``path``."""
    path = str(path)
    if not os.path.exists(path):
        raise CheckpointNotFoundError(f"{path}: checkpoint not found")
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file (give RUN/last.pt or RUN/best.pt)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError/OSError/EOFError/UnpicklingError/KeyError variants
        raise CheckpointError(f"{path}: not a transip-md checkpoint ({_unreadable_reason(path, exc)})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a transip-md checkpoint (no '{FORMAT}' format tag)")
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ckpt['version']} is newer than this transip-md")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a transip-md checkpoint (lacks {missing})")
    ckpt["model_config"] = _complete_model_config(path, ckpt["model_config"])
    return ckpt


def _complete_model_config(path: str, config: dict[str, Any]) -> dict[str, Any]:
    """The model config with every key: a key added after the checkpoint was written takes its default, which
    is the behaviour the checkpoint was trained with (so ``--init-from``/``--resume`` compare like with like)."""
    from ..model import TransIPConfig

    try:
        return TransIPConfig.from_dict(config).to_dict()
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable model config ({exc})") from exc


def best_checkpoint(last: dict[str, Any]) -> dict[str, Any]:
    """The weights-only checkpoint of the best epoch recorded in ``last`` (what best.pt holds).

    It has no optimizer/scheduler/RNG state: resume from ``last.pt``, export from either.
    """
    best = last["best"]
    epoch = int(best["epoch"])
    keys = ("format", "version", "model_config", "train_config", "data_hash")
    out = {k: last[k] for k in keys if k in last}
    out.update(
        model_state=best["model_state"],
        ema_state=best["ema_state"],
        epoch=epoch,
        best_metric=float(best["metric"]),
        history=[row for row in last.get("history", []) if int(row.get("epoch", 0)) <= epoch + 1],
        weights_only=True,
    )
    return out


def sync_best(run: Path, last: dict[str, Any]) -> Path | None:
    """Make ``run/best.pt`` the best epoch recorded in ``last``; rewrite it only if it is missing or stale.

    Returns the path, or None for a version-1 ``last`` that records no best weights.
    """
    if "best" not in last:
        return None
    path = run / "best.pt"
    if path.exists():
        try:
            if int(load_checkpoint(path)["epoch"]) == int(last["best"]["epoch"]):
                return path
        except CheckpointError:
            pass  # a torn or foreign best.pt is rewritten from last.pt below
    save_atomic(best_checkpoint(last), path)
    return path


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])


def model_from_checkpoint(ckpt: dict[str, Any], use_ema: bool = True):
    """The TransIP network of a checkpoint, with EMA weights (default) or raw weights."""
    from ..model import TransIP, TransIPConfig

    model = TransIP(TransIPConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["model_state"])
    if use_ema and ckpt.get("ema_state"):
        with torch.no_grad():
            params = dict(model.named_parameters())
            for name, value in ckpt["ema_state"].items():
                params[name].copy_(value)
    return model


def provenance(ckpt: dict[str, Any]) -> dict[str, Any]:
    return {
        "source": "transip-md train",
        "data_hash": ckpt.get("data_hash"),
        "train_config": ckpt.get("train_config"),
        "epoch": ckpt.get("epoch"),
        "step": ckpt.get("step"),
        "validation": (ckpt.get("history") or [{}])[-1],
        "weights": "ema" if ckpt.get("ema_state") else "raw",
    }


def export_checkpoint(checkpoint_path: str | os.PathLike, output_path: str | os.PathLike) -> Path:
    """Write the compiled model file (EMA weights, provenance metadata) of a trainer checkpoint."""
    ckpt = load_checkpoint(checkpoint_path)
    return export_loaded(ckpt, output_path, os.path.basename(str(checkpoint_path)))


def export_loaded(ckpt: dict[str, Any], output_path: str | os.PathLike, source: str) -> Path:
    """Write the compiled model file of an already loaded checkpoint dict (``source``: its file name)."""
    from ..model import export

    model = model_from_checkpoint(ckpt)
    prov = provenance(ckpt)
    prov["checkpoint"] = source
    return export(model, output_path, prov)
