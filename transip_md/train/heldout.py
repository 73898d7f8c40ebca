"""The project's held-out split: molecules flagged ``heldout`` in a data set are never trained on.

Three sides, all by molecule: *held-out* (the data set's own flag, used by every accuracy/vertical/MD-stability
evaluation), and the rest split into *train* and *validation* (early stopping and best-epoch selection).
Data without the flag (extxyz, ASE db) have no held-out side; their validation side is then the only unseen one.
The flag itself is read by :func:`transip_md.train.data.heldout_split`; this module adds the validation side.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .data import Frame, ReadReport, heldout_split, read_frames, split

if TYPE_CHECKING:
    from .config import TrainConfig


def partition(frames: Sequence[Frame], val_fraction: float, seed: int = 0) -> tuple[list[int], list[int], list[int]]:
    """(train, validation, held-out) frame indices; validation splits the non-held-out molecules by ``mol_id``."""
    rest, held = heldout_split(frames)
    sub_train, sub_val = split([frames[i] for i in rest], val_fraction, seed)
    return [rest[k] for k in sub_train], [rest[k] for k in sub_val], held


def heldout_frames(data: str | os.PathLike | None = None) -> tuple[list[Frame], list[int]]:
    """Frames of ``data`` (default: the shipped set) and the indices of its held-out molecules' frames."""
    from ..data import default_dataset_path

    frames, _ = read_frames(data if data is not None else default_dataset_path())
    _, held = heldout_split(frames)
    if not held:
        raise ValueError(f"{data or default_dataset_path()}: the data set flags no held-out molecules")
    return frames, held


def training_sides(cfg: TrainConfig) -> tuple[list[Frame], list[int], list[int], list[ReadReport]]:
    """A training config's frames and its whole (train, validation) sides, before any subsetting: with
    ``val_data``, its data's non-held-out molecules are the training side and those files the validation side;
    otherwise the data's non-held-out molecules split by ``val_fraction`` and ``split_seed`` (held-out molecules on
    neither side).
    The non-held-out molecules of ``train_only_data`` join the training side after that split, so they never
    change it. Returns one read report per list of files read: data first, then train-only data, then
    validation data."""
    elements = cfg.model.get("elements")
    frames, report = read_frames(cfg.data, elements=elements, skip_bad=cfg.skip_bad)
    reports = [report]
    if not cfg.val_data:
        train_ids, val_ids, _ = partition(frames, cfg.val_fraction, cfg.split_seed)
    else:
        train_ids, val_ids = heldout_split(frames)[0], []  # held-out molecules are never trained on
    if cfg.train_only_data:
        extra, extra_report = read_frames(cfg.train_only_data, elements=elements, skip_bad=cfg.skip_bad)
        rest, _ = heldout_split(extra)
        train_ids += [len(frames) + i for i in rest]
        frames = frames + extra
        reports.append(extra_report)
    if cfg.val_data:
        val_frames, val_report = read_frames(cfg.val_data, elements=elements, skip_bad=cfg.skip_bad)
        val_ids = list(range(len(frames), len(frames) + len(val_frames)))
        frames = frames + val_frames
        reports.append(val_report)
    return frames, train_ids, val_ids, reports
