"""Edge lists for the model: all pairs for isolated molecules, minimum-image neighbour lists under PBC.

Edges are i -> j with vector r_j - r_i (+ cell shift) in Å. The integer topology is built with
NumPy/vesin (no gradients needed); the edge vectors are then formed in torch from the positions so
that autograd gives forces and the virial.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class EdgeTopology:
    """Edges src -> dst (int64 arrays) and integer cell shifts (E, 3) of dst's image."""

    src: np.ndarray
    dst: np.ndarray
    shifts: np.ndarray

    @property
    def n_edges(self) -> int:
        return int(self.src.shape[0])


def all_pairs(n_atoms: int, offset: int = 0) -> EdgeTopology:
    """Every ordered pair i != j of one structure (global mode)."""
    idx = np.arange(n_atoms, dtype=np.int64)
    src, dst = np.meshgrid(idx, idx, indexing="ij")
    mask = src != dst
    return EdgeTopology(src[mask] + offset, dst[mask] + offset, np.zeros((int(mask.sum()), 3), dtype=np.int64))


def cutoff_pairs(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> EdgeTopology:
    """All ordered pairs closer than ``cutoff`` Å, with periodic images where ``pbc`` is set.

    Works for triclinic cells and cells smaller than 2 x cutoff (several images of one neighbour).
    """
    from vesin import NeighborList

    positions = np.ascontiguousarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool)
    if pbc.any() and not pbc.all():
        return _ase_pairs(positions, cell, pbc, cutoff)
    periodic = bool(pbc.all())
    box = cell if periodic else np.zeros((3, 3))
    nl = NeighborList(cutoff=cutoff, full_list=True)
    i, j, s = nl.compute(points=positions, box=box, periodic=periodic, quantities="ijS")
    return EdgeTopology(i.astype(np.int64), j.astype(np.int64), s.astype(np.int64))


def _ase_pairs(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> EdgeTopology:
    """Mixed periodicity (e.g. slabs) through ASE's neighbour list."""
    from ase.neighborlist import primitive_neighbor_list

    i, j, s = primitive_neighbor_list("ijS", pbc, cell, positions, cutoff, self_interaction=False)
    return EdgeTopology(i.astype(np.int64), j.astype(np.int64), s.astype(np.int64))


def edge_vectors(positions: Tensor, cell: Tensor, topo: EdgeTopology) -> Tensor:
    """r_j - r_i + shift . cell in Å, differentiable with respect to positions and cell."""
    src = torch.as_tensor(topo.src, device=positions.device)
    dst = torch.as_tensor(topo.dst, device=positions.device)
    vec = positions[dst] - positions[src]
    if topo.n_edges and np.any(topo.shifts):
        shifts = torch.as_tensor(topo.shifts, dtype=positions.dtype, device=positions.device)
        vec = vec + shifts @ cell
    return vec


def edge_index(topo: EdgeTopology, device: torch.device | str = "cpu") -> Tensor:
    return torch.as_tensor(np.stack([topo.src, topo.dst]), dtype=torch.long, device=device)
