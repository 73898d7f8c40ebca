"""Energy, forces and virial of one structure from a TransIP model (eV, Å), shared by the bridges."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..validation import InputError
from .compiled import CompiledModel
from .graph import EdgeTopology, all_pairs, cutoff_pairs, edge_index, edge_vectors
from .transip import TransIP

# TorchScript's profiling graph executor re-optimises for every new neighbour-count shape and its
# optimised graphs ran 2x slower here than the unoptimised interpreter (972-atom box, one thread:
# 2.04 s vs 1.06 s per energy+force call), so the engines run compiled models with optimisation off.

#: Centres per chunk for local models at inference (measured: see docs/model.md).
DEFAULT_CHUNK = 128


@dataclass
class Prediction:
    """energy eV, energies eV per atom, forces eV/Å, virial eV (W = -sum_e r_e (x) dE/dr_e)."""

    energy: float
    energies: np.ndarray
    forces: np.ndarray
    virial: np.ndarray | None


def model_cutoff(model: CompiledModel | TransIP) -> float | None:
    if isinstance(model, CompiledModel):
        return model.cutoff
    return model.config.cutoff


def _module(model: CompiledModel | TransIP) -> torch.nn.Module:
    return model.module if isinstance(model, CompiledModel) else model


def topology(model: CompiledModel | TransIP, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> EdgeTopology:
    """Edges the model needs: all pairs (global mode) or pairs within the cutoff (local mode)."""
    cutoff = model_cutoff(model)
    if cutoff is None:
        if np.any(pbc):
            raise InputError(
                "this model is a global (all-pairs) model for isolated molecules; it cannot run a periodic "
                "system: use a model with a finite cutoff"
            )
        return all_pairs(len(positions))
    return cutoff_pairs(positions, cell, pbc, cutoff)


def predict(
    model: CompiledModel | TransIP,
    numbers: np.ndarray,
    positions: np.ndarray,
    cell: np.ndarray | None = None,
    pbc: np.ndarray | None = None,
    charge: int = 0,
    multiplicity: int = 1,
    virial: bool = False,
    device: torch.device | str = "cpu",
    chunk_size: int = DEFAULT_CHUNK,
) -> Prediction:
    """Evaluate one structure. Positions and cell in Å; forces by autograd through the edge vectors.

    Local models are evaluated ``chunk_size`` centres at a time (exact; bounds memory, keeps cost linear).
    """
    cell = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64)
    pbc = np.zeros(3, dtype=bool) if pbc is None else np.asarray(pbc, dtype=bool)
    topo = topology(model, positions, cell, pbc)
    pos_t = torch.as_tensor(np.asarray(positions, dtype=np.float64), device=device)
    cell_t = torch.as_tensor(cell, device=device)
    vec = edge_vectors(pos_t, cell_t, topo)
    n = len(numbers)
    module = _module(model)
    args = (
        torch.as_tensor(np.asarray(numbers), dtype=torch.long, device=device),
        edge_index(topo, device),
        vec,
        torch.tensor([float(charge)], dtype=torch.float64, device=device),
        torch.tensor([float(multiplicity)], dtype=torch.float64, device=device),
        torch.zeros(n, dtype=torch.long, device=device),
        -1,
    )
    with torch.jit.optimized_execution(False):  # see the note above DEFAULT_CHUNK
        out, grad = module.energy_and_gradient(*args, chunk_size)
    total = out.sum()
    grad = grad.to(torch.float64)
    src = torch.as_tensor(topo.src, device=device)
    dst = torch.as_tensor(topo.dst, device=device)
    forces = torch.zeros(n, 3, dtype=torch.float64, device=device)
    forces = forces.index_add(0, src, grad).index_add(0, dst, -grad)
    w = None
    if virial:
        w = (-(vec.detach().to(torch.float64).T @ grad)).cpu().numpy()
    return Prediction(
        energy=float(total.detach()),
        energies=out.detach().cpu().numpy(),
        forces=forces.cpu().numpy(),
        virial=w,
    )
