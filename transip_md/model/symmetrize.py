"""Inference-time symmetrisation: average a model's energy over a fixed finite set of rotations (frames).

    E_sym(x) = 1/K sum_k E(R_k x),   R_k = g_k C,   g_k in G (a finite rotation group), C fixed

Every R_k is applied to the edge vectors (r_j - r_i -> R_k (r_j - r_i)), so E_sym is a function of the
positions like any model and the forces stay conservative: F = -dE_sym/dx = 1/K sum_k R_k^T F(R_k x), exactly
(the gradient with respect to the edge vectors is 1/K sum_k g_k R_k, row-vector form). E_sym is exactly
invariant under the K rotations C^T G C; under other rotations only the parts of the model's orientation
dependence that G cannot average (spherical-harmonic degrees l >= 3 for T, 4 for O, 6 for I) are left.

Groups: ``tetrahedral`` (12 rotations), ``octahedral`` (24), ``icosahedral`` (60). C (``seed``, default a
fixed random rotation) turns the group away from the coordinate axes, because the rotary position encoding
acts on x, y and z separately with the same frequencies and an axis-aligned group could share the symmetry of
the model's error; on the shipped model this made no clear difference (bench/results/symmetrize.md).
``seed=None`` keeps the group axis-aligned. The cost is K model evaluations per call.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Optional  # noqa: UP035 - TorchScript needs typing.Optional

import torch
from torch import Tensor, nn

from ..atomic_io import atomic_write
from .compiled import CompiledModel, build_metadata
from .contract import METADATA_FILE

log = logging.getLogger(__name__)

GROUP_ORDERS = {"tetrahedral": 12, "octahedral": 24, "icosahedral": 60}


def _axis_angle(axis: list[float], angle: float) -> Tensor:
    """Rotation matrix (3, 3) float64 about ``axis`` by ``angle`` radians (Rodrigues)."""
    a = torch.tensor(axis, dtype=torch.float64)
    a = a / a.norm()
    k = torch.tensor([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


def _closure(generators: list[Tensor], order: int) -> Tensor:
    """All products of the generators (a finite group of ``order`` rotations), (order, 3, 3) float64."""
    found = {tuple(torch.eye(3, dtype=torch.float64).round(decimals=8).flatten().tolist()): torch.eye(3).double()}
    frontier = list(found.values())
    while frontier:
        new = []
        for r in frontier:
            for g in generators:
                p = g @ r
                key = tuple(p.round(decimals=8).flatten().tolist())
                if key not in found:
                    found[key] = p
                    new.append(p)
        frontier = new
        if len(found) > order:
            break
    if len(found) != order:
        raise RuntimeError(f"rotation group closure gave {len(found)} elements, expected {order}")
    return torch.stack([found[k] for k in sorted(found)])


def group_rotations(group: str) -> Tensor:
    """The proper rotations of a point group about the coordinate axes, (K, 3, 3) float64."""
    c3 = _axis_angle([1.0, 1.0, 1.0], 2.0 * math.pi / 3.0)
    if group == "tetrahedral":
        return _closure([_axis_angle([0.0, 0.0, 1.0], math.pi), c3], 12)
    if group == "octahedral":
        return _closure([_axis_angle([0.0, 0.0, 1.0], math.pi / 2.0), c3], 24)
    if group == "icosahedral":
        phi = (1.0 + math.sqrt(5.0)) / 2.0  # 5-fold axis through the vertex (0, 1, phi); 3-fold along (1, 1, 1)
        return _closure([_axis_angle([0.0, 1.0, phi], 2.0 * math.pi / 5.0), c3], 60)
    raise ValueError(f"unknown rotation group {group!r}; choose one of {sorted(GROUP_ORDERS)}")


def frame_rotations(group: str, seed: int | None = 0) -> Tensor:
    """The frames R_k = g_k C (K, 3, 3) float64; C a uniform random rotation from ``seed`` (None: identity)."""
    rots = group_rotations(group)
    if seed is None:
        return rots
    from scipy.spatial.transform import Rotation

    c = torch.from_numpy(Rotation.random(1, random_state=seed).as_matrix()[0])
    return rots @ c


class SymmetrizedTransIP(nn.Module):
    """A model averaged over fixed frames; TorchScript-able, with the engine-facing methods of TransIP.

    ``base`` is a TransIP or its TorchScript module (model-file format 2: ``natoms`` argument).
    ``atom_features`` returns the frame average of the base's features (a descriptor; the energies are the
    average of the base's energies, not the head applied to averaged features).
    """

    def __init__(self, base: nn.Module, rotations: Tensor) -> None:
        super().__init__()
        if rotations.dim() != 3 or rotations.shape[1:] != (3, 3) or rotations.shape[0] < 1:
            raise ValueError("rotations must have shape (K, 3, 3) with K >= 1")
        self.base = base
        self.register_buffer("rotations", rotations.to(torch.float64).clone())
        self.n_frames = int(rotations.shape[0])
        # the base's identity, which load_compiled checks against the metadata
        spread = bool(getattr(base, "learned_spread", False))
        if spread != isinstance(self, SymmetrizedSpreadTransIP):
            raise ValueError(
                f"{type(self).__name__} does not fit a base with learned_spread={spread}; symmetrize() picks the "
                "wrapper that does"
            )
        self.learned_spread = spread
        self.cutoff = float(base.cutoff)
        self.is_local = bool(base.is_local)
        self.register_buffer("elements", base.elements.detach().clone())

    def forward(
        self,
        species: Tensor,
        edge_index: Tensor,
        edge_vec: Tensor,
        charge: Tensor,
        spin: Tensor,
        batch: Tensor,
        n_centers: int = -1,
        natoms: Optional[Tensor] = None,  # noqa: UP045 - TorchScript
    ) -> Tensor:
        """Per-atom energies (eV, float64) averaged over the frames; differentiable (forces by autograd)."""
        total = torch.zeros(0, dtype=torch.float64, device=edge_vec.device)
        for k in range(self.n_frames):
            rot = self.rotations[k].to(edge_vec.dtype)
            e = self.base.forward(species, edge_index, edge_vec @ rot.T, charge, spin, batch, n_centers, natoms)
            total = e if k == 0 else total + e
        return total / float(self.n_frames)

    @torch.jit.export
    def energy_and_gradient(
        self,
        species: Tensor,
        edge_index: Tensor,
        edge_vec: Tensor,
        charge: Tensor,
        spin: Tensor,
        batch: Tensor,
        n_centers: int = -1,
        chunk_size: int = 0,
        natoms: Optional[Tensor] = None,  # noqa: UP045 - TorchScript
    ) -> tuple[Tensor, Tensor]:
        """Averaged per-atom energies (eV) and dE_sym/d(edge_vec) (eV/Å): 1/K sum_k g_k R_k (row vectors)."""
        energies = torch.zeros(0, dtype=torch.float64, device=edge_vec.device)
        grad = torch.zeros_like(edge_vec)
        for k in range(self.n_frames):
            rot = self.rotations[k].to(edge_vec.dtype)
            e, g = self.base.energy_and_gradient(
                species, edge_index, edge_vec @ rot.T, charge, spin, batch, n_centers, chunk_size, natoms
            )
            energies = e if k == 0 else energies + e
            grad = grad + g.to(edge_vec.dtype) @ rot
        return energies / float(self.n_frames), grad / float(self.n_frames)

    @torch.jit.export
    def atom_features(
        self,
        species: Tensor,
        edge_index: Tensor,
        edge_vec: Tensor,
        charge: Tensor,
        spin: Tensor,
        batch: Tensor,
        n_centers: int = -1,
        natoms: Optional[Tensor] = None,  # noqa: UP045 - TorchScript
    ) -> Tensor:
        """Frame average of the base's final per-atom features (n_centers, d_model)."""
        total = torch.zeros(0, device=edge_vec.device)
        for k in range(self.n_frames):
            rot = self.rotations[k].to(edge_vec.dtype)
            h = self.base.atom_features(species, edge_index, edge_vec @ rot.T, charge, spin, batch, n_centers, natoms)
            total = h if k == 0 else total + h
        return total / float(self.n_frames)


class SymmetrizedSpreadTransIP(SymmetrizedTransIP):
    """The frame average of a learned-charge-spread base (model-file format 3).

    ``forward`` and ``atom_features`` pass ``spread_total`` on, and the three methods an engine that splits a
    structure calls (docs/model.md, "Learned charge/spin spread") are here: the spread weights depend on distances
    only, so a structure's sum W and its gradient are the base's own in any frame, and
    ``energy_gradients_given_spread`` averages the base's energies, fixed-W gradients (rotated back) and dE/dW.
    """

    def forward(
        self,
        species: Tensor,
        edge_index: Tensor,
        edge_vec: Tensor,
        charge: Tensor,
        spin: Tensor,
        batch: Tensor,
        n_centers: int = -1,
        natoms: Optional[Tensor] = None,  # noqa: UP045 - TorchScript
        spread_total: Optional[Tensor] = None,  # noqa: UP045 - TorchScript
    ) -> Tensor:
        """Per-atom energies (eV, float64) averaged over the frames; differentiable (forces by autograd)."""
        total = torch.zeros(0, dtype=torch.float64, device=edge_vec.device)
        for k in range(self.n_frames):
            rot = self.rotations[k].to(edge_vec.dtype)
            e = self.base.forward(
                species, edge_index, edge_vec @ rot.T, charge, spin, batch, n_centers, natoms, spread_total
            )
            total = e if k == 0 else total + e
        return total / float(self.n_frames)

    @torch.jit.export
    def atom_features(
        self,
        species: Tensor,
        edge_index: Tensor,
        edge_vec: Tensor,
        charge: Tensor,
        spin: Tensor,
        batch: Tensor,
        n_centers: int = -1,
        natoms: Optional[Tensor] = None,  # noqa: UP045 - TorchScript
        spread_total: Optional[Tensor] = None,  # noqa: UP045 - TorchScript
    ) -> Tensor:
        """Frame average of the base's final per-atom features (n_centers, d_model)."""
        total = torch.zeros(0, device=edge_vec.device)
        for k in range(self.n_frames):
            rot = self.rotations[k].to(edge_vec.dtype)
            h = self.base.atom_features(
                species, edge_index, edge_vec @ rot.T, charge, spin, batch, n_centers, natoms, spread_total
            )
            total = h if k == 0 else total + h
        return total / float(self.n_frames)

    @torch.jit.export
    def charge_spread_sums(
        self, species: Tensor, edge_index: Tensor, edge_vec: Tensor, batch: Tensor, n_struct: int, n_centers: int = -1
    ) -> Tensor:
        """The base's spread-weight sums W (n_struct,) float64 (rotation-invariant: no average needed)."""
        return self.base.charge_spread_sums(species, edge_index, edge_vec, batch, n_struct, n_centers)

    @torch.jit.export
    def charge_spread_sum_gradient(
        self,
        species: Tensor,
        edge_index: Tensor,
        edge_vec: Tensor,
        batch: Tensor,
        weight_grad: Tensor,
        n_centers: int = -1,
    ) -> Tensor:
        """The base's d(sum_b weight_grad[b] W_b)/d(edge_vec) (E, 3) in eV/Å (W is rotation-invariant)."""
        return self.base.charge_spread_sum_gradient(species, edge_index, edge_vec, batch, weight_grad, n_centers)

    @torch.jit.export
    def energy_gradients_given_spread(
        self,
        species: Tensor,
        edge_index: Tensor,
        edge_vec: Tensor,
        charge: Tensor,
        spin: Tensor,
        batch: Tensor,
        n_centers: int = -1,
        chunk_size: int = 0,
        natoms: Optional[Tensor] = None,  # noqa: UP045 - TorchScript
        spread_total: Optional[Tensor] = None,  # noqa: UP045 - TorchScript
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Frame averages of the base's per-atom energies (eV), dE/d(edge_vec) at fixed W (eV/Å, rotated back)
        and dE/dW (B,) in eV."""
        energies = torch.zeros(0, dtype=torch.float64, device=edge_vec.device)
        grad = torch.zeros_like(edge_vec)
        weight_grad = torch.zeros(charge.shape[0], dtype=torch.float64, device=edge_vec.device)
        for k in range(self.n_frames):
            rot = self.rotations[k].to(edge_vec.dtype)
            e, g, gw = self.base.energy_gradients_given_spread(
                species, edge_index, edge_vec @ rot.T, charge, spin, batch, n_centers, chunk_size, natoms, spread_total
            )
            energies = e if k == 0 else energies + e
            grad = grad + g.to(edge_vec.dtype) @ rot
            weight_grad = weight_grad + gw
        n = float(self.n_frames)
        return energies / n, grad / n, weight_grad / n


def _base_and_metadata(model: Any) -> tuple[nn.Module, dict[str, Any]]:
    if isinstance(model, CompiledModel):
        if "symmetrize" in model.metadata:
            raise ValueError(f"{model.path}: already symmetrised ({model.metadata['symmetrize']})")
        return model.module, json.loads(json.dumps(model.metadata))
    return model.eval(), build_metadata(model)


def symmetrize(model: Any, group: str = "octahedral", seed: int | None = 0) -> CompiledModel:
    """A loaded model file (:class:`CompiledModel`) or a TransIP, averaged over ``group``'s frames.

    Returns a :class:`CompiledModel` whose TorchScript module is the wrapper, with metadata key
    ``symmetrize`` = {group, frames, seed}; every engine and :func:`transip_md.model.predict` take it as is.
    """
    base, meta = _base_and_metadata(model)
    rotations = frame_rotations(group, seed)
    wrapper_class = SymmetrizedSpreadTransIP if bool(getattr(base, "learned_spread", False)) else SymmetrizedTransIP
    wrapper = wrapper_class(base, rotations).eval()
    meta["symmetrize"] = {"group": group, "frames": int(rotations.shape[0]), "seed": seed}
    path = model.path if isinstance(model, CompiledModel) else "<memory>"
    device = model.device if isinstance(model, CompiledModel) else torch.device("cpu")
    return CompiledModel(module=torch.jit.script(wrapper), metadata=meta, path=path, device=device)


def export_symmetrized(model: Any, output: str | os.PathLike, group: str = "octahedral", seed: int | None = 0) -> Path:
    """Write the symmetrised model as a model file (same format; metadata key ``symmetrize``). Atomic write."""
    wrapped = symmetrize(model, group, seed)
    output = Path(output)
    with atomic_write(output) as tmp:
        torch.jit.save(wrapped.module, str(tmp), _extra_files={METADATA_FILE: json.dumps(wrapped.metadata, indent=1)})
    log.info("wrote %s (%s, %d frames)", output, group, wrapped.metadata["symmetrize"]["frames"])
    return output
