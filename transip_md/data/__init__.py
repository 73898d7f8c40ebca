"""Shipped data: a small GFN2-xTB labelled organic data set and a small pretrained local TransIP model."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DATASET = "xtb-organics.extxyz.gz"
MODEL = "transip-small.pt"


def default_dataset_path() -> Path:
    """The shipped extxyz.gz (made by `transip-md label`, see docs/training.md)."""
    return Path(str(resources.files(__name__).joinpath(DATASET)))


def default_model_path() -> Path:
    """The shipped pretrained model (local, cutoff 5 Å, float32, learned equivariance)."""
    return Path(str(resources.files(__name__).joinpath(MODEL)))
