"""Training configuration: defaults, YAML/TOML files, overrides (CLI flags, ``--set key=value``), and the
configuration of a resumed run (its ``config.json``, with only :data:`RESUMABLE_KEYS` allowed to change)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

#: The architecture rule, said in every model-config error and in ``transip-md train --help``.
MODEL_RULE = (
    "d_model must be divisible by n_heads, and the head dimension d_model / n_heads must be at least "
    "6 x n_rope_freqs (rotary frequencies per axis, default 2: at least 12)"
)

#: Keys that may differ from a run's config.json when it is resumed: the length of the run, the learning-rate
#: schedule, and what does not change the numbers (output, progress, plots, threads, determinism switch).
RESUMABLE_KEYS = frozenset(
    {
        "epochs",
        "max_steps",
        "time_budget_s",
        "lr",
        "min_lr_ratio",
        "warmup_steps",
        "output",
        "resume",
        "progress",
        "plots",
    }
    | {"threads", "deterministic", "device"}
)

#: Keys added after runs were already stored, with the value an older config.json (without the key) meant:
#: before ``align`` existed, the learned alignment compared per-atom features ('atoms'), not today's 'pooled'.
LEGACY_DEFAULTS = {"align": "atoms"}

#: Forms of the force term of the loss (TrainConfig.force_loss; losses.py).
FORCE_LOSSES = ("mse", "smooth_l1")


class ConfigError(ValueError):
    """A training configuration that cannot be used; the message names the key or flag."""


@dataclass
class TrainConfig:
    # data
    data: list[str] = field(default_factory=list)
    val_data: list[str] = field(default_factory=list)  # if empty: split ``data`` by molecule
    # training side only: their non-held-out molecules are all trained on, never validated on, so adding such
    # files leaves the train/validation split of ``data`` (and so a line of stages' validation side) unchanged
    train_only_data: list[str] = field(default_factory=list)
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
    # augment: within 3.1 % of the learned forms in the study, which cost 1.3-2.6x its training time
    # (docs/training.md, "Which default"); learned = the paper's objective (with align 'pooled') or our
    # per-atom form (align 'atoms')
    equivariance: str = "augment"  # learned | augment | none
    energy_weight: float = 1.0  # on (eV/atom)^2
    force_weight: float = 1.0  # on (eV/Å)^2 (force_loss 'mse') or eV/Å ('smooth_l1')
    #: Form of the force term (losses.py): 'mse' (squared error per component, eV^2/Å^2) or 'smooth_l1'
    #: (per component |e| - beta/2 above force_loss_beta eV/Å, e^2 / (2 beta) below: an absolute error that
    #: does not let the few largest errors dominate; MACE's Huber and fairchem's force-norm losses are of this kind).
    force_loss: str = "mse"
    force_loss_beta: float = 0.05  # eV/Å, smooth_l1 only
    align_weight: float = 1.0
    #: Weight of the vertical-gap loss (eV^2; losses.py): errors of energy differences between the charge/spin
    #: states of one geometry. > 0 batches the states of a geometry together. 0: off (the loss before it existed).
    vertical_weight: float = 0.0
    #: Share of the run (the learning-rate schedule's progress: steps, or the time budget) trained on direct forces
    #: read off the network (eSEN's direct-force pretraining, train/direct.py; local models), before the
    #: conservative forces -dE/dx of the rest. 0: off (conservative throughout, as before it existed).
    direct_forces: float = 0.0
    # learned mode: 'atoms' (per-atom features; the default: the better form in the study, bench/equivariance.py)
    # or 'pooled' (the paper's: mean-pooled final embeddings of two rotated views); alignment loss 'mse'
    # (normalised embeddings) or 'infonce' (contrastive over the batch, temperature align_temperature; pooled
    # only); align_stop_gradient detaches the target view. docs/training.md, "Which default"
    align: str = "atoms"
    align_loss: str = "mse"
    align_temperature: float = 0.1
    align_stop_gradient: bool = False
    # optimisation
    epochs: int = 10
    max_steps: int | None = None
    #: Wall-clock training budget in seconds for this process (None: no limit). With a budget the learning-rate
    #: schedule follows max(step progress, time progress), so the cosine decay ends when the budget does.
    time_budget_s: float | None = None
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
    #: Where the model trains: "cpu", "cuda" (under torchrun: the process's LOCAL_RANK GPU) or "cuda:N".
    #: Checkpoints and exported model files are device-independent (loaded to the CPU, exported from the CPU).
    device: str = "cpu"
    # validation and output
    output: str = "runs/transip"
    symmetry_structures: int = 4
    symmetry_rotations: int = 8
    progress: bool = True
    plots: bool = True
    resume: str | None = None
    #: Start from the (EMA) weights of this trainer checkpoint, with a fresh optimizer, schedule and counters
    #: (fine-tuning, e.g. on more data); the model configuration must be the checkpoint's.
    init_from: str | None = None
    #: With init_from: the model may have more blocks (model.n_layers) than the checkpoint; the extra blocks are
    #: appended as identity maps, so the run starts at the checkpoint's energies (train/grow.py).
    init_grow: bool = False
    #: With init_from: start a covalent-scaled model (model.covalent_scaled_radial) from a plain-radial checkpoint;
    #: every weight is copied and the radial splines are extended (train/covalent_start.py).
    init_covalent: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown training config keys: {sorted(unknown)} (known: {sorted(known)})")
        cfg = cls(**data)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Raise :class:`ConfigError` for a setting that cannot work, before any data is read."""
        if self.equivariance not in ("learned", "augment", "none"):
            raise ConfigError(f"equivariance must be learned, augment or none, got {self.equivariance!r}")
        if self.align not in ("pooled", "atoms"):
            raise ConfigError(f"align must be pooled or atoms, got {self.align!r}")
        if self.align_loss not in ("mse", "infonce"):
            raise ConfigError(f"align_loss must be mse or infonce, got {self.align_loss!r}")
        if self.align == "atoms" and self.align_loss != "mse":
            raise ConfigError(
                f"align_loss {self.align_loss!r} needs align 'pooled' (--align pooled): the per-atom alignment "
                "(align 'atoms', the default) uses mse"
            )
        if self.force_loss not in FORCE_LOSSES:
            raise ConfigError(f"force_loss must be one of {FORCE_LOSSES}, got {self.force_loss!r}")
        if not self.force_loss_beta > 0.0:
            raise ConfigError(f"force_loss_beta must be > 0 eV/Å, got {self.force_loss_beta}")
        if not self.vertical_weight >= 0.0:
            raise ConfigError(f"vertical_weight must be >= 0, got {self.vertical_weight}")
        if not 0.0 <= self.direct_forces < 1.0:
            raise ConfigError(
                f"direct_forces must be in [0, 1) (the share of the run before conservative training), "
                f"got {self.direct_forces}"
            )
        if self.direct_forces > 0.0 and self.model.get("cutoff") is None:
            raise ConfigError(
                "direct_forces needs a local model (--cutoff in Å): the direct-force head reads each atom's own "
                "neighbourhood, which a global (all-pairs) model does not have"
            )
        if self.align_temperature <= 0:
            raise ConfigError(f"align_temperature must be > 0, got {self.align_temperature}")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if self.max_val_frames is not None and self.max_val_frames < 0:
            raise ConfigError(f"max_val_frames must be >= 0 (0: all held-out frames), got {self.max_val_frames}")
        for key in ("epochs", "max_steps", "max_atoms", "max_frames"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"{key} must be >= 1, got {value}")
        check_device(self.device)
        if self.init_grow and not self.init_from:
            raise ConfigError("init_grow (--init-grow) needs init_from (--init-from CKPT): the checkpoint to grow")
        if self.init_covalent and not self.init_from:
            raise ConfigError("init_covalent (--init-covalent) needs init_from (--init-from CKPT): a plain checkpoint")
        if self.init_covalent and self.init_grow:
            raise ConfigError("init_covalent and init_grow cannot be combined: grow first, then start covalent")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if isinstance(self.data, str):
            self.data = [self.data]
        if isinstance(self.val_data, str):
            self.val_data = [self.val_data]
        if isinstance(self.train_only_data, str):
            self.train_only_data = [self.train_only_data]
        self.check_model()

    def check_model(self) -> None:
        """Build the model config (elements: a placeholder until the data are read) to check the architecture."""
        from ..model.config import TransIPConfig

        mcfg = {**self.model, "dtype": self.dtype}
        if not mcfg.get("elements"):
            mcfg["elements"] = [1]
        try:
            TransIPConfig.from_dict(mcfg)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model config: {exc}; rule: {MODEL_RULE}") from exc


def check_device(device: str) -> None:
    """Refuse a device string torch cannot use here, naming it (before any data is read)."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?", str(device)):
        raise ConfigError(f"device must be cpu, cuda or cuda:N, got {device!r}")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {device!r}: no CUDA GPU is usable here (torch {torch.__version__}, "
                "torch.cuda.is_available() is False); train with device cpu or install a CUDA build of torch"
            )
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML (.yaml/.yml) or TOML (.toml) file as a dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except Exception as exc:  # yaml.YAMLError / tomllib.TOMLDecodeError: name the file, no traceback
        raise ConfigError(f"{path}: cannot parse the config file: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping")
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


def run_folder(resume: str | os.PathLike) -> Path:
    """The run folder of ``--resume``: the folder itself, or the folder of a checkpoint file."""
    path = Path(resume)
    return path if path.is_dir() else path.parent


def resume_config(resume: str | os.PathLike) -> dict[str, Any]:
    """The configuration a resumed run starts from: the run's ``config.json`` (written before its first epoch).

    A key the stored file lacks because it was added later takes its :data:`LEGACY_DEFAULTS` value.
    """
    path = Path(resume)
    if not path.exists():
        raise ConfigError(f"{path}: --resume: no such run folder or checkpoint")
    config = run_folder(path) / "config.json"
    if not config.is_file():
        raise ConfigError(f"{path}: --resume: not a training run (no {config.name} in {run_folder(path)})")
    try:
        data = json.loads(config.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{config}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{config}: the config must be a mapping")
    for key, value in LEGACY_DEFAULTS.items():
        data.setdefault(key, value)  # an older run resumes as what it trained, not as today's default
    return data


def diff_keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Keys whose values differ between two (model) configs, sorted; a key missing on one side counts."""
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def describe_diff(a: dict[str, Any], b: dict[str, Any], keys: list[str]) -> str:
    """``"key: a vs b"`` for each of ``keys``, comma-separated (for config-mismatch errors)."""
    return ", ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in keys)


def _get(data: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def merge_resume(stored: dict[str, Any], overrides: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """``stored`` (a run's config) with ``overrides`` applied; refuse a change to a key outside RESUMABLE_KEYS.

    ``names`` maps each override key to what the user typed (``--heads``, ``--set model.n_rbf``), for the error.
    """
    for key, value in overrides.items():
        current = _get(stored, key)
        if key not in RESUMABLE_KEYS and value != current:
            allowed = ", ".join(sorted(RESUMABLE_KEYS - {"resume"}))
            raise ConfigError(
                f"{names.get(key, key)} {value!r} differs from the resumed run's {key}={current!r}; a resumed run "
                f"keeps its config.json except {allowed} (start a new run to change {key})"
            )
    return apply_overrides(stored, overrides)
