"""The project's held-out split: molecules flagged ``heldout`` in a data set are never trained on.

Three sides, all by molecule: *held-out* (the data set's own flag, used by every accuracy/vertical/MD-stability
evaluation), and the rest split into *train* and *validation* (early stopping and best-epoch selection).
Data without the flag (extxyz, ASE db) have no held-out side; their validation side is then the only unseen one.
The flag itself is read by :func:`transip_md.train.data.heldout_split`; this module adds the validation side.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .data import Frame, heldout_split, read_frames, split


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
