"""The engine-call layer: the rules every bridge (ASE, OpenMM, LAMMPS ML-IAP, the evaluator) applies around
one call of a model's ``energy_and_gradient``. Each rule lives here once:

* :func:`model_inputs` builds the model's positional arguments (species, edge index, edge vectors Å,
  charge e, multiplicity, batch, n_centers) for one structure;
* :func:`call_energy_and_gradient` runs it (plain TorchScript interpreter, see :data:`OPTIMIZED_EXECUTION`);
* :func:`forces_from_edge_gradient` and :func:`virial_from_edge_gradient` turn dE/d(r_ij) into atom forces
  (eV/Å) and the virial (eV); both are TorchScript-compatible (the OpenMM TorchForce module calls them);
* :func:`require_local` refuses a global (all-pairs) model where it cannot run (periodic cells, LAMMPS);
* :func:`edge_topology` chooses the edges a model needs (all pairs for a global model, pairs within the
  cutoff for a local one; refuses a global model on a periodic cell), for the evaluator and the trainer;
* :func:`electron_parity_ok` (vectorised), :func:`electron_parity_error`, :func:`check_electron_parity`: total
  charge and spin multiplicity must fit the electron count. The C++ plugin's copy of the message is generated
  from :data:`PARITY_MESSAGE` (``plugins/lammps/gen_contract.py``).

Edge convention: edge k goes from ``src[k]`` to ``dst[k]`` with vector r_dst - r_src (+ cell shift), Å.
"""

# ruff: noqa: UP045  (TorchScript compiles these signatures: keep typing.Optional)
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..validation import InputError
from .graph import EdgeTopology, all_pairs, cutoff_pairs

#: TorchScript's profiling executor re-optimises for every new neighbour-count shape, and its optimised
#: graphs ran slower than the plain interpreter for this model (bench/results/moved_from_docstrings.md), so
#: engines run with it off.
OPTIMIZED_EXECUTION = False

#: fmt/str.format template of the parity error; ``n`` electrons, ``q`` charge (e), ``m`` multiplicity.
PARITY_MESSAGE = (
    "impossible charge/spin: {n} electrons (charge {q}) cannot have spin multiplicity {m}; the parity of "
    "electrons and unpaired electrons must match"
)

#: Why a global model is refused, by place ("periodic" or "lammps").
GLOBAL_MODEL_MESSAGES = {
    "periodic": "a global (all-pairs) model cannot run a periodic system; use a model with a finite cutoff",
    "lammps": "a global (all-pairs) model cannot run in LAMMPS; LAMMPS needs a strictly local model with a "
    "finite cutoff",
}


class GlobalModelError(InputError):
    """A global (all-pairs) model was asked to run where only a local (finite-cutoff) model can."""


def require_local(cutoff: Optional[float], where: str, source: str = "") -> None:
    """Raise :class:`GlobalModelError` if ``cutoff`` is None (global model); ``where``: 'periodic' or 'lammps'."""
    if cutoff is None:
        prefix = f"{source}: " if source else ""
        raise GlobalModelError(prefix + GLOBAL_MODEL_MESSAGES[where])


def edge_topology(
    cutoff: Optional[float], positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, source: str = ""
) -> EdgeTopology:
    """The edges of one structure (positions, cell Å) for a model with ``cutoff`` Å (None: global, all pairs).

    A periodic structure (any ``pbc``) needs a local model (:func:`require_local`; ``source`` names the input).
    """
    if np.any(pbc):
        require_local(cutoff, "periodic", source)
    if cutoff is None:
        return all_pairs(len(positions))
    return cutoff_pairs(positions, cell, pbc, cutoff)


def electron_parity_ok(z_sum, charge, multiplicity):
    """Elementwise over NumPy arrays (or scalars) of integer atomic-number sums, charges (e) and multiplicities:
    multiplicity >= 1, unpaired electrons (multiplicity - 1) <= electrons, and both of the same parity."""
    n_electrons = np.asarray(z_sum) - np.asarray(charge)
    unpaired = np.asarray(multiplicity) - 1
    return (unpaired >= 0) & (n_electrons >= unpaired) & ((n_electrons - unpaired) % 2 == 0)


def electron_parity_error(z_sum: int, charge: float, multiplicity: float) -> Optional[str]:
    """The error text if ``charge`` (e) and ``multiplicity`` (2S+1) do not fit atoms whose atomic numbers sum
    to ``z_sum``, else None. Charge and multiplicity must be integers, multiplicity >= 1."""
    if int(charge) != charge:
        return f"total charge must be an integer number of e, got {charge}"
    if int(multiplicity) != multiplicity or multiplicity < 1:
        return f"spin multiplicity must be an integer >= 1 (2S+1), got {multiplicity}"
    n_electrons = int(z_sum) - int(charge)
    if n_electrons < 0:
        return f"total charge {int(charge)} leaves {n_electrons} electrons"
    if not electron_parity_ok(int(z_sum), int(charge), int(multiplicity)):
        return PARITY_MESSAGE.format(n=n_electrons, q=int(charge), m=int(multiplicity))
    return None


def check_electron_parity(z_sum: int, charge: float, multiplicity: float) -> None:
    """Raise :class:`InputError` with :func:`electron_parity_error`'s message when the pair is impossible."""
    message = electron_parity_error(z_sum, charge, multiplicity)
    if message is not None:
        raise InputError(message)


def model_inputs(
    species: Tensor,
    edge_index: Tensor,
    edge_vec: Tensor,
    charge: float,
    multiplicity: float,
    n_centers: int = -1,
) -> tuple:
    """Positional arguments of ``energy_and_gradient`` for ONE structure (all atoms in batch 0).

    species (N,) atomic numbers; edge_index (2, E); edge_vec (E, 3) Å; charge e; multiplicity 2S+1;
    n_centers: energies for atoms 0..n_centers-1 only (-1: all; LAMMPS: the local atoms).
    """
    device = edge_vec.device
    return (
        species.to(device=device, dtype=torch.long),
        edge_index.to(device=device, dtype=torch.long),
        edge_vec,
        torch.tensor([float(charge)], dtype=torch.float64, device=device),
        torch.tensor([float(multiplicity)], dtype=torch.float64, device=device),
        torch.zeros(species.shape[0], dtype=torch.long, device=device),
        int(n_centers),
    )


def accepts_natoms(module: torch.nn.Module) -> bool:
    """Whether the model's ``energy_and_gradient`` takes the trailing ``natoms`` argument (format version 2)."""
    method = getattr(module, "energy_and_gradient", None)
    schema = getattr(method, "schema", None)
    if schema is not None:  # a TorchScript method
        return any(arg.name == "natoms" for arg in schema.arguments)
    import inspect

    return method is not None and "natoms" in inspect.signature(method).parameters


def call_energy_and_gradient(
    module: torch.nn.Module, inputs: tuple, chunk_size: int = 0, natoms: Optional[float] = None
) -> tuple[Tensor, Tensor]:
    """Per-atom energies (n_centers,) eV float64 and dE/d(edge_vec) (E, 3) eV/Å.

    ``natoms``: total atoms of the structure when this call sees only part of it (LAMMPS ranks); passed to
    models that take it, as a (1,) float64 tensor; None lets the model count batch[:n_centers].
    """
    args = tuple(inputs) + (int(chunk_size),)
    if natoms is not None and accepts_natoms(module):
        device = inputs[2].device
        args = args + (torch.tensor([float(natoms)], dtype=torch.float64, device=device),)
    with torch.jit.optimized_execution(OPTIMIZED_EXECUTION):
        energies, grad = module.energy_and_gradient(*args)
    return energies, grad


def forces_from_edge_gradient(grad: Tensor, edge_index: Tensor, n_atoms: int) -> Tensor:
    """Atom forces (n_atoms, 3) from g_k = dE/d(r_k), r_k = r_dst - r_src: F_src += g, F_dst -= g."""
    forces = torch.zeros(n_atoms, 3, dtype=grad.dtype, device=grad.device)
    return forces.index_add(0, edge_index[0], grad).index_add(0, edge_index[1], -grad)


def virial_from_edge_gradient(edge_vec: Tensor, grad: Tensor) -> Tensor:
    """Virial W = -sum_k r_k (x) dE/d(r_k) (3, 3), eV (not symmetrised)."""
    return -(edge_vec.to(grad.dtype).transpose(0, 1) @ grad)
