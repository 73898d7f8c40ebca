"""Shipped data: the GFN2-xTB labelled organic data set (docs/data.md) and a small pretrained local TransIP model."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: The shipped training set: 9 elements, 4 charge/spin states, compact .npz (transip-frames/1, docs/data.md).
DATASET = "gfn2-organics-9el.npz"
#: The bond supplement: 420 molecules derived with rare heteroatom-halogen bonds (P-Cl, S-Cl, ...; docs/data.md).
BOND_SUPPLEMENT = "gfn2-bond-supplement.npz"
#: The first, small set (80 H/C/N/O molecules, 1,275 frames, extxyz.gz): kept for quick tests and examples.
LEGACY_DATASET = "xtb-organics.extxyz.gz"
MODEL = "transip-small.pt"


def default_dataset_path() -> Path:
    """The shipped data set (read it with ``transip_md.train.data.read_frames``; made by `transip-md label`)."""
    return Path(str(resources.files(__name__).joinpath(DATASET)))


def bond_supplement_path() -> Path:
    """The bond supplement, trained on together with the shipped set (its own held-out molecules flagged)."""
    return Path(str(resources.files(__name__).joinpath(BOND_SUPPLEMENT)))


def default_training_paths() -> list[Path]:
    """What ``transip-md train`` reads without ``--data``: the shipped set and the bond supplement."""
    return [default_dataset_path(), bond_supplement_path()]


def legacy_dataset_path() -> Path:
    """The first 80-molecule H/C/N/O extxyz.gz set (docs/training.md), small enough for quick tests."""
    return Path(str(resources.files(__name__).joinpath(LEGACY_DATASET)))


def default_model_path() -> Path:
    """The shipped pretrained model (local, cutoff 5 Å, float32, trained with rotation augmentation)."""
    return Path(str(resources.files(__name__).joinpath(MODEL)))
