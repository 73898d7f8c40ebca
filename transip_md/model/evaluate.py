"""Energy, forces and virial of one structure from a TransIP model (eV, Å), shared by the Python bridges.

:func:`predict` applies the input rules of :mod:`transip_md.validation` (coordinates, overlaps) and the
engine-call rules of :mod:`transip_md.model.engine`, so ASE, OpenMM's PythonForce and the CLI all refuse
the same bad input with the same message before any native neighbour-list code runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..validation import MIN_DISTANCE_A, check_coordinates, check_overlaps
from .compiled import CompiledModel
from .engine import (
    call_energy_and_gradient,
    edge_topology,
    forces_from_edge_gradient,
    model_inputs,
    virial_from_edge_gradient,
)
from .graph import EdgeTopology, edge_index, edge_vectors
from .transip import TransIP

#: Centres per chunk for local models at inference (exact by strict locality; bounds memory).
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


def model_device(model: CompiledModel | TransIP) -> torch.device:
    """Where the model's weights live (a loaded model file: the device it was loaded to)."""
    if isinstance(model, CompiledModel):
        return model.device
    for tensor in (*model.buffers(), *model.parameters()):
        return tensor.device
    return torch.device("cpu")


def topology(model: CompiledModel | TransIP, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> EdgeTopology:
    """Edges the model needs: all pairs (global mode) or pairs within the cutoff (local mode)."""
    return edge_topology(model_cutoff(model), positions, cell, pbc)


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
    min_distance_a: float = MIN_DISTANCE_A,
) -> Prediction:
    """Evaluate one structure. Positions and cell in Å; forces by autograd through the edge vectors.

    Refuses (:class:`transip_md.validation.InputError`) non-finite or absurd coordinates and atoms closer
    than ``min_distance_a`` Å. Local models are evaluated ``chunk_size`` centres at a time (exact; bounds memory).
    """
    cell = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64)
    pbc = np.zeros(3, dtype=bool) if pbc is None else np.asarray(pbc, dtype=bool)
    positions = np.asarray(positions, dtype=np.float64)
    check_coordinates(numbers, positions, cell, pbc)
    topo = topology(model, positions, cell, pbc)
    pos_t = torch.as_tensor(positions, device=device)
    vec = edge_vectors(pos_t, torch.as_tensor(cell, device=device), topo)
    check_overlaps(numbers, topo.src, topo.dst, torch.linalg.norm(vec, dim=1).cpu().numpy(), min_distance_a)
    index = edge_index(topo, device)
    species = torch.as_tensor(np.asarray(numbers), dtype=torch.long, device=device)
    inputs = model_inputs(species, index, vec, charge, multiplicity)
    out, grad = call_energy_and_gradient(_module(model), inputs, chunk_size)
    grad = grad.detach().to(torch.float64)
    forces = forces_from_edge_gradient(grad, index, len(numbers))
    w = virial_from_edge_gradient(vec.detach(), grad).cpu().numpy() if virial else None
    return Prediction(
        energy=float(out.detach().sum()),
        energies=out.detach().cpu().numpy(),
        forces=forces.cpu().numpy(),
        virial=w,
    )
