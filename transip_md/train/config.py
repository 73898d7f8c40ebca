"""Training configuration: defaults, YAML/TOML files, and overrides (CLI flags, ``--set key=value``)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass
class TrainConfig:
    # data
    data: list[str] = field(default_factory=list)
    val_data: list[str] = field(default_factory=list)  # if empty: split ``data`` by molecule
    val_fraction: float = 0.1
    split_seed: int = 0
    max_frames: int | None = None  # use only the first molecules' frames up to this many (quick runs)
    # validation frames (an even spread of the held-out ones), independent of max_frames; 0: all of them;
    # None: max_frames // 4 when max_frames is set, else all
    max_val_frames: int | None = None
    skip_bad: bool = False
    # model (TransIPConfig keys; ``elements`` default: those in the data)
    model: dict[str, Any] = field(
        default_factory=lambda: {"d_model": 64, "n_layers": 2, "n_heads": 4, "cutoff": 5.0, "n_rbf": 64}
    )
    dtype: str = "float32"
    # objective
    equivariance: str = "learned"  # learned | augment | none
    energy_weight: float = 1.0  # on (eV/atom)^2
    force_weight: float = 1.0  # on (eV/Å)^2
    align_weight: float = 1.0
    # optimisation
    epochs: int = 10
    max_steps: int | None = None
    max_atoms: int = 256  # per (global) batch
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 50
    weight_decay: float = 1e-4
    grad_clip: float = 10.0
    ema_decay: float = 0.99
    seed: int = 0
    deterministic: bool = False
    threads: int = 0  # torch threads per process (0: torch's default)
    # validation and output
    output: str = "runs/transip"
    symmetry_structures: int = 4
    symmetry_rotations: int = 8
    progress: bool = True
    plots: bool = True
    resume: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training config keys: {sorted(unknown)} (known: {sorted(known)})")
        cfg = cls(**data)
        cfg.check()
        return cfg

    def check(self) -> None:
        if self.equivariance not in ("learned", "augment", "none"):
            raise ValueError(f"equivariance must be learned, augment or none, got {self.equivariance!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if self.max_val_frames is not None and self.max_val_frames < 0:
            raise ValueError(f"max_val_frames must be >= 0 (0: all held-out frames), got {self.max_val_frames}")
        if isinstance(self.data, str):
            self.data = [self.data]
        if isinstance(self.val_data, str):
            self.val_data = [self.val_data]


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML (.yaml/.yml) or TOML (.toml) file as a dict."""
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".toml":
        import tomllib

        return tomllib.loads(text)
    import yaml

    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the config must be a mapping")
    return data


def parse_value(text: str) -> Any:
    """``--set`` values: JSON if it parses (numbers, lists, null, true), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set ``a.b=value`` style keys (``model.d_model``) into a copy of ``data``."""
    out = json.loads(json.dumps(data))
    for key, value in overrides.items():
        target = out
        parts = key.split(".")
        for p in parts[:-1]:
            target = target.setdefault(p, {})
        target[parts[-1]] = value
    return out
