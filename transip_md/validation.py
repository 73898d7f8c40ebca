"""Checks on engine input shared by every bridge: elements, charge/spin parity, positions.

Each error names the atom (0-based index and element), the value and the unit involved.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase.data import chemical_symbols

#: Atoms closer than this (Å) are refused as overlapping.
MIN_DISTANCE_A = 0.1


class InputError(ValueError):
    """Engine input the model cannot be evaluated on."""


def symbol(z: int) -> str:
    return chemical_symbols[z] if 0 < z < len(chemical_symbols) else f"Z={z}"


def check_elements(numbers: Sequence[int], known: Sequence[int]) -> None:
    known_set = set(int(z) for z in known)
    for i, z in enumerate(np.asarray(numbers, dtype=int)):
        if int(z) not in known_set:
            allowed = ", ".join(symbol(k) for k in sorted(known_set))
            raise InputError(f"atom {i}: element {symbol(int(z))} is not supported by the model (knows {allowed})")


def check_charge_spin(numbers: Sequence[int], charge: int, multiplicity: int) -> None:
    """Total charge (e) and spin multiplicity 2S+1 must fit the electron count."""
    if int(charge) != charge:
        raise InputError(f"total charge must be an integer number of e, got {charge}")
    if int(multiplicity) != multiplicity or multiplicity < 1:
        raise InputError(f"spin multiplicity must be an integer >= 1 (2S+1), got {multiplicity}")
    n_electrons = int(np.sum(numbers)) - int(charge)
    unpaired = int(multiplicity) - 1
    if n_electrons < 0:
        raise InputError(f"total charge {charge} leaves {n_electrons} electrons")
    if unpaired > n_electrons or (n_electrons - unpaired) % 2:
        raise InputError(
            f"impossible charge/spin: {n_electrons} electrons (charge {charge}) cannot have spin "
            f"multiplicity {multiplicity}; the parity of electrons and unpaired electrons must match"
        )


def check_positions(numbers: Sequence[int], positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> None:
    """Finite coordinates (Å) and no two atoms closer than MIN_DISTANCE_A (minimum image under PBC)."""
    positions = np.asarray(positions, dtype=np.float64)
    bad = ~np.isfinite(positions).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"atom {i} ({symbol(int(numbers[i]))}): position is not finite: {positions[i]} Å")
    if len(positions) < 2:
        return
    from .model.graph import cutoff_pairs

    topo = cutoff_pairs(positions, cell, pbc, MIN_DISTANCE_A)
    if topo.n_edges:
        i, j = int(topo.src[0]), int(topo.dst[0])
        d = positions[j] - positions[i] + topo.shifts[0] @ np.asarray(cell, dtype=np.float64)
        raise InputError(
            f"atoms {i} ({symbol(int(numbers[i]))}) and {j} ({symbol(int(numbers[j]))}) overlap: "
            f"distance {np.linalg.norm(d):.4f} Å < {MIN_DISTANCE_A} Å"
        )
