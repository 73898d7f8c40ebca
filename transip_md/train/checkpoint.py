"""Checkpoints: plain dicts of tensors and primitives (``torch.load(weights_only=True)``), written atomically.

Keys: format, version, model_config, train_config, model_state, ema_state (EMA of the model's floating
parameters), transform_state (learned mode), optimizer, scheduler, rng (python/numpy/torch states),
epoch (last finished, 0-based), step, best_metric, data_hash, history.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "transip-md-checkpoint"
VERSION = 1


def save_atomic(obj: dict[str, Any], path: str | os.PathLike) -> None:
    """torch.save to a temporary file in the same folder, then os.replace (never a torn file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: checkpoint not found")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path}: not a transip-md trainer checkpoint")
    if ckpt.get("version", 0) > VERSION:
        raise ValueError(f"{path}: checkpoint version {ckpt['version']} is newer than this transip-md")
    return ckpt


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
    from ..model import export

    ckpt = load_checkpoint(checkpoint_path)
    model = model_from_checkpoint(ckpt)
    prov = provenance(ckpt)
    prov["checkpoint"] = os.path.basename(str(checkpoint_path))
    return export(model, output_path, prov)
