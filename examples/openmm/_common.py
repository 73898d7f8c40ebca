"""Shared by the OpenMM examples: pick the model (given, shipped, or a random stand-in)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def pick_model(path: str | None, elements=(1, 6, 7, 8)) -> str:
    """The model file to use: --model, else the pretrained model shipped with transip-md, else (with a
    loud warning) a random-weight float64 global model so that the example still runs end to end."""
    if path:
        return path
    from transip_md.openmm.mlpotential import default_model_path

    shipped = default_model_path()
    if shipped:
        return shipped
    from transip_md.model import TransIPConfig, export, random_model

    print(
        "WARNING: no --model and no pretrained model shipped: using RANDOM weights (the physics is meaningless; "
        "this only demonstrates the workflow)",
        file=sys.stderr,
    )
    cfg = TransIPConfig(cutoff=None, dtype="float64", d_model=32, n_heads=2, elements=list(elements))
    return str(export(random_model(cfg, seed=0), Path(tempfile.mkdtemp()) / "random-transip.pt"))
