"""Export a TransIP network to a compiled model file and load it back (TorchScript + JSON, no pickle)."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..atomic_io import atomic_write
from .config import TransIPConfig
from .contract import FORMAT_NAME, FORMAT_VERSION, METADATA_FILE, ModelFileError, check_metadata
from .transip import TransIP


def build_metadata(model: TransIP, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Metadata for ``model`` following the contract in :mod:`transip_md.model.contract`."""
    cfg = model.config
    refs = model.reference_energies.detach().to(torch.float64).cpu().tolist()
    prov = {"transip_md_version": __version__, "created": datetime.datetime.now(datetime.UTC).isoformat()}
    prov.update(provenance or {})
    return {
        "format": FORMAT_NAME,
        # format 3 only where it is needed, so engines built for format 2 keep running every other model
        "format_version": FORMAT_VERSION if cfg.learned_charge_spread else 2,
        "elements": list(cfg.elements),
        "cutoff": cfg.cutoff,
        "n_layers": cfg.n_layers,
        "dtype": cfg.dtype,
        "uses_charge_spin": cfg.use_charge_spin,
        "reference_energies": {str(z): e for z, e in zip(cfg.elements, refs, strict=True)},
        "config": cfg.to_dict(),
        "provenance": prov,
    }


def export(model: TransIP, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> Path:
    """Compile ``model`` with TorchScript and write it, with metadata, atomically to ``path``.

    ``metadata`` entries are merged into provenance; the contract keys always come from the model.
    """
    path = Path(path)
    meta = build_metadata(model, metadata)
    model = model.eval()
    scripted = torch.jit.script(model)
    with atomic_write(path) as tmp:
        torch.jit.save(scripted, str(tmp), _extra_files={METADATA_FILE: json.dumps(meta, indent=1)})
    return path


@dataclass
class CompiledModel:
    """A loaded model file: the TorchScript module plus its checked metadata."""

    module: torch.jit.ScriptModule
    metadata: dict[str, Any]
    path: str
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def cutoff(self) -> float | None:
        c = self.metadata["cutoff"]
        return None if c is None else float(c)

    @property
    def is_local(self) -> bool:
        return self.cutoff is not None

    @property
    def elements(self) -> list[int]:
        return [int(z) for z in self.metadata["elements"]]

    @property
    def dtype(self) -> torch.dtype:
        return torch.float64 if self.metadata["dtype"] == "float64" else torch.float32

    @property
    def config(self) -> TransIPConfig:
        return TransIPConfig.from_dict(self.metadata["config"])

    def sha256(self) -> str:
        return hashlib.sha256(Path(self.path).read_bytes()).hexdigest()


def load_compiled(path: str | os.PathLike, device: str | torch.device = "cpu") -> CompiledModel:
    """Load a compiled model file; raise :class:`ModelFileError` naming the problem if it is not usable."""
    path = str(path)
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: model file not found")
    if os.path.getsize(path) == 0:
        raise ModelFileError(f"{path}: model file is empty")
    extra = {METADATA_FILE: ""}
    try:
        module = torch.jit.load(path, map_location=device, _extra_files=extra)
    except Exception as exc:  # torch raises RuntimeError/ValueError variants for foreign or truncated files
        raise ModelFileError(
            f"{path}: cannot be read as a TorchScript model file (truncated or foreign?): {str(exc).splitlines()[0]}"
        ) from exc
    raw = extra[METADATA_FILE]
    if not raw:
        raise ModelFileError(f"{path}: TorchScript file without transip-md metadata ({METADATA_FILE})")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: metadata is not valid JSON: {exc}") from exc
    check_metadata(meta, path)
    if not hasattr(module, "energy_and_gradient"):
        raise ModelFileError(
            f"{path}: model file lacks the energy_and_gradient method the engines call (written by an older "
            "transip-md); re-export it with `transip-md export --checkpoint`"
        )
    check_module_agrees(module, meta, path)
    module.eval()
    return CompiledModel(module=module, metadata=meta, path=path, device=torch.device(device))


def check_module_agrees(module: torch.jit.ScriptModule, meta: dict[str, Any], path: str) -> None:
    """The metadata's cutoff (Å, null = global) and elements must be the TorchScript module's own
    (``cutoff``/``is_local`` attributes, ``elements`` buffer): an edited metadata file is refused."""
    if not all(hasattr(module, name) for name in ("cutoff", "is_local", "elements")):
        raise ModelFileError(f"{path}: the TorchScript module has no cutoff/is_local/elements: not a transip-md model")
    module_cutoff = float(module.cutoff) if bool(module.is_local) else None
    meta_cutoff = None if meta["cutoff"] is None else float(meta["cutoff"])
    if (module_cutoff is None) != (meta_cutoff is None) or (
        module_cutoff is not None and abs(module_cutoff - meta_cutoff) > 1e-9 * max(1.0, module_cutoff)
    ):
        raise ModelFileError(
            f"{path}: metadata cutoff {meta_cutoff} Å disagrees with the compiled module's cutoff {module_cutoff} Å "
            "(edited metadata?); re-export the model instead of editing its metadata"
        )
    module_elements = [int(z) for z in module.elements.tolist()]
    if module_elements != [int(z) for z in meta["elements"]]:
        raise ModelFileError(
            f"{path}: metadata elements {meta['elements']} disagree with the compiled module's {module_elements} "
            "(edited metadata?); re-export the model instead of editing its metadata"
        )


def eager_model(compiled: CompiledModel) -> TransIP:
    """The eager :class:`TransIP` behind a model file: the config from its metadata, the weights from its module.

    Used to recompile a file with this version's code (``transip-md export --recompile``) and for
    ``torch.compile`` (which cannot compile TorchScript). Strict: every tensor must match.
    A symmetrised file (metadata key ``symmetrize``) is a wrapper, not a TransIP: refused with a clear error.
    """
    refuse_symmetrized(compiled)
    model = TransIP(compiled.config)
    state = {k: v.detach().clone() for k, v in compiled.module.state_dict().items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"{compiled.path}: weights do not match the config in its metadata: {exc}") from exc
    blocks = compiled.module.blocks
    kernels = {bool(getattr(blocks, str(i)).use_sdpa) for i in range(len(model.blocks))}
    model.set_attention_kernel("sdpa" if kernels == {True} else "math")
    return model.to(compiled.device).eval()


def refuse_symmetrized(compiled: CompiledModel) -> None:
    """Raise :class:`ModelFileError` if ``compiled`` is a symmetrised wrapper (no eager TransIP behind it)."""
    sym = compiled.metadata.get("symmetrize")
    if sym is None:
        return
    detail = f"{sym.get('group')}, {sym.get('frames')} frames" if isinstance(sym, dict) else str(sym)
    raise ModelFileError(
        f"{compiled.path}: is a symmetrised wrapper ({detail}) around a base model, not a plain TransIP; it cannot "
        "be rebuilt as an eager model (--recompile, torch.compile): use the base model file instead (export or "
        "recompile the base model, then symmetrise it again with `transip-md export --symmetrize`)"
    )


def recompile(source: str | os.PathLike, output: str | os.PathLike) -> Path:
    """Rewrite a model file with this transip-md's code: same weights and metadata, new TorchScript."""
    compiled = load_compiled(source)
    provenance = dict(compiled.metadata.get("provenance", {}))
    provenance["recompiled"] = {
        "from_sha256": compiled.sha256(),
        "transip_md_version": __version__,
        "when": datetime.datetime.now(datetime.UTC).isoformat(),
    }
    return export(eager_model(compiled), output, provenance)


def random_model(config: TransIPConfig, seed: int = 0, reference_energies: dict[int, float] | None = None) -> TransIP:
    """A TransIP with random weights (smoke tests, benchmarks); reference energies in eV optional."""
    torch.manual_seed(seed)
    model = TransIP(config)
    if model.spread is not None:  # a random, uneven spread (a new one starts even: its last layer is zero)
        with torch.no_grad():
            model.spread.out[2].weight.normal_(0.0, 1.0)
            model.spread.out[2].bias.normal_(0.0, 0.5)
    if reference_energies:
        refs = np.array([reference_energies.get(z, 0.0) for z in config.elements], dtype=np.float64)
        model.reference_energies.copy_(torch.from_numpy(refs))
    return model
