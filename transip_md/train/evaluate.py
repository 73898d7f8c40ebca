"""``transip-md evaluate``: errors of a compiled model on labelled data, overall, per charge/spin state, per
sampler and per element (forces)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from ..model import load_compiled
from .config import ConfigError, TrainConfig, read_config_file
from .data import Frame, ReadReport, TopologyCache, heldout_split, molecule_key, read_frames
from .heldout import training_sides
from .metrics import (
    error_sums,
    metrics_from_sums,
    per_element_force_metrics,
    per_sampler_metrics,
    per_state_metrics,
    predict_frames,
    symmetry_metrics,
)
from .vertical import format_vertical, vertical_gaps


def evaluate_model(
    model_path: str | os.PathLike,
    data: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    max_atoms: int = 512,
    symmetry_structures: int = 8,
    symmetry_rotations: int = 8,
    skip_bad: bool = False,
    heldout_only: bool = False,
    vertical: bool = False,
    validation_of: str | os.PathLike | None = None,
    training_of: str | os.PathLike | None = None,
    molecules: int | None = None,
    sample_seed: int = 0,
) -> dict[str, Any]:
    """Errors of a model file on ``data`` (default: the shipped set); ``heldout_only``: its held-out molecules;
    ``validation_of`` (a training config or a run's config.json): that run's whole validation side instead;
    ``training_of``: that run's training side (only the frames read from ``data`` when it is given), to set
    beside the held-out errors (a gap between the two is generalisation, none is under-fitting).
    ``molecules``: a random sample of that many molecules of the chosen side (``sample_seed``)."""
    from ..data import default_dataset_path

    if sum((validation_of is not None, training_of is not None, heldout_only)) > 1:
        raise ValueError("choose one side: --heldout, --validation CONFIG or --training CONFIG")
    if validation_of is not None and data:
        raise ValueError("give either a training config (its validation side) or data / --heldout, not both")
    model = load_compiled(model_path)
    if validation_of is not None:
        frames, ids, report = validation_side(validation_of, skip_bad=skip_bad)
        source: Any = validation_of
        side = "validation"
    elif training_of is not None:
        frames, ids, report = training_side(training_of, only_from=data, skip_bad=skip_bad)
        source = training_of
        side = "training"
    else:
        frames, report = read_frames(data or default_dataset_path(), elements=model.elements, skip_bad=skip_bad)
        ids = heldout_split(frames)[1] if heldout_only else list(range(len(frames)))
        source = data or default_dataset_path()
        side = "held-out" if heldout_only else "all"
    if not ids:
        raise ValueError(
            f"{source}: no frames to evaluate on the {side} side (no held-out molecules flagged, or no validation or "
            "training frames?)"
        )
    if molecules is not None:
        ids = sample_molecules(frames, ids, molecules, sample_seed)
    preds = predict_frames(model.module, frames, ids, TopologyCache(frames, model.cutoff), max_atoms)
    # Symmetry on structures spread over the set.
    step = max(1, len(ids) // max(1, symmetry_structures))
    sym_ids = ids[::step][:symmetry_structures]
    result = {
        "model": str(model_path),
        "side": side,
        "frames": len(ids),
        "skipped_frames": report.skipped_frames,
        "skipped_files": report.skipped_files,
        "overall": metrics_from_sums(error_sums(frames, preds)),
        "per_state": per_state_metrics(frames, preds),
        "per_sampler": per_sampler_metrics(frames, preds),
        "per_element": per_element_force_metrics(frames, preds),
        "symmetry": symmetry_metrics(model, frames, sym_ids, symmetry_rotations),
    }
    if vertical:
        result["vertical"] = vertical_gaps(frames, preds, ids)
    return result


def validation_side(config: str | os.PathLike, skip_bad: bool = False) -> tuple[list[Frame], list[int], ReadReport]:
    """Frames and indices of a training run's whole validation side, split exactly as the trainer splits it (its
    ``val_data``, or its data's non-held-out molecules split by ``val_fraction`` and ``split_seed``); the trainer's
    per-epoch numbers use an evenly spread subset of it (``max_val_frames``)."""
    cfg = _run_config(config, skip_bad)
    frames, _, val_ids, reports = training_sides(cfg)
    return frames, val_ids, reports[-1 if cfg.val_data else 0]  # the files the validation side came from


def _run_config(config: str | os.PathLike, skip_bad: bool) -> TrainConfig:
    """The training config ``config`` describes (a YAML/TOML file or a run's config.json), reading as ``skip_bad``
    says; ConfigError when it names no training data."""
    cfg = TrainConfig.from_dict(read_config_file(config))
    if not cfg.data:
        raise ConfigError(f"{config}: the config names no training data")
    cfg.skip_bad = skip_bad
    return cfg


def training_side(
    config: str | os.PathLike,
    only_from: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
    skip_bad: bool = False,
) -> tuple[list[Frame], list[int], ReadReport]:
    """Frames and indices of a training run's training side, split exactly as the trainer splits it (its ``data``
    and ``train_only_data`` files, held-out and validation molecules left out); with ``only_from`` (files among
    those), only the frames read from them."""
    frames, train_ids, _, reports = training_sides(_run_config(config, skip_bad))
    if only_from:
        resolved = cache(lambda name: Path(name).resolve())  # one lookup per file, not per frame
        file_of = {i: resolved(frames[i].source.rpartition(": frame ")[0]) for i in train_ids}
        wanted = [Path(p).resolve() for p in ([only_from] if isinstance(only_from, str | os.PathLike) else only_from)]
        kept: set[int] = set()
        for w in wanted:  # the file itself, or files under that folder
            hits = {i for i in train_ids if file_of[i] == w or w in file_of[i].parents}
            if not hits:
                raise ValueError(f"{config}: no frame of the run's training side was read from {w}")
            kept |= hits
        train_ids = sorted(kept)
    return frames, train_ids, reports[0]


def sample_molecules(frames: Sequence[Frame], ids: Sequence[int], n: int, seed: int = 0) -> list[int]:
    """The frames (of ``ids``) of ``n`` molecules drawn at random with ``seed`` (all of them when there are at
    most ``n``); frames without a molecule id count as molecules of their own."""
    if n < 1:
        raise ValueError(f"--molecules must be at least 1, got {n}")
    key = {i: molecule_key(frames[i], i) for i in ids}
    names = sorted(set(key.values()))
    if len(names) <= n:
        return list(ids)
    chosen = set(np.asarray(names)[np.random.default_rng(seed).choice(len(names), size=n, replace=False)].tolist())
    return [i for i in ids if key[i] in chosen]


def format_table(result: dict[str, Any]) -> str:
    cols = [
        ("frames", "frames", "d"),
        ("energy_mae_meV", "E MAE meV", ".1f"),
        ("energy_rmse_meV", "E RMSE meV", ".1f"),
        ("energy_mae_meV_per_atom", "E MAE meV/at", ".2f"),
        ("force_mae_meV_per_A", "F MAE meV/Å", ".1f"),
        ("force_rmse_meV_per_A", "F RMSE meV/Å", ".1f"),
    ]
    lines = [
        f"model {result['model']}: {result['frames']} frames ({result.get('side', 'all')}, skipped "
        f"{result['skipped_frames']})"
    ]
    header = f"{'state (q/mult)':<15}" + "".join(f"{title:>14}" for _, title, _ in cols)
    lines += [header, "-" * len(header)]
    rows = [("all", result["overall"])] + list(result["per_state"].items())
    for name, m in rows:
        lines.append(f"{name:<15}" + "".join(f"{m[k]:>14{fmt}}" for k, _, fmt in cols))
    by_sampler = result.get("per_sampler") or {}
    if by_sampler:
        lines += [f"{'sampler':<15}" + "".join(f"{title:>14}" for _, title, _ in cols), "-" * len(header)]
        for name, m in by_sampler.items():
            lines.append(f"{name:<15}" + "".join(f"{m[k]:>14{fmt}}" for k, _, fmt in cols))
    by_element = result.get("per_element") or {}
    if by_element:
        lines += [f"{'element':<15}{'atoms':>14}{'F MAE meV/Å':>14}{'F RMSE meV/Å':>14}{'zero-F MAE':>14}", "-" * 71]
        for name, m in by_element.items():
            lines.append(
                f"{name:<15}{m['atoms']:>14d}{m['force_mae_meV_per_A']:>14.1f}{m['force_rmse_meV_per_A']:>14.1f}"
                f"{m['zero_force_mae_meV_per_A']:>14.1f}"
            )
    sym = result.get("symmetry") or {}
    if sym:
        lines.append(
            f"symmetry error: energy std {sym['sym_energy_std_meV']:.3f} meV, "
            f"rotated-back force RMS {sym['sym_force_rms_meV_per_A']:.3f} meV/Å"
        )
    if result.get("vertical"):
        lines.append(format_vertical(result["vertical"]))
    return "\n".join(lines)
