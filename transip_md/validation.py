"""Checks on engine input shared by every bridge: elements, charge/spin parity, positions.

Each error names the atom (0-based index and element), the value and the unit involved. The position
rules, applied by every engine before any native code (neighbour lists) sees the coordinates:

* every coordinate finite;
* non-periodic structures: every Cartesian coordinate within +-:data:`MAX_COORDINATE_A` Å of the origin
  (a neighbour-list library crashed the process with SIGFPE on an atom 2e5 Å away);
* fully periodic cells: every fractional coordinate within +-:data:`MAX_CELL_IMAGES` (unwrapped MD
  trajectories stay far inside this);
* no two atoms closer than :data:`MIN_DISTANCE_A` Å (minimum image under PBC).

The OpenMM force is the one place where the positions are not the user's input but trial points of OpenMM's
own algorithms: ``LocalEnergyMinimizer`` opens every run with a step of 1 nm (total norm) along the force, which
on a small molecule can carry two atoms through each other. There the model's nuclear-repulsion wall is the
answer OpenMM's line search needs (a high finite energy it backs away from: 73 eV for H-H at 0.1 Å, 1,350 eV at
0.01 Å with the shipped model), so the OpenMM force refuses only atoms closer than
:data:`COINCIDENT_DISTANCE_A` (a duplicated atom, where no energy is meaningful); docs/openmm.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase.data import chemical_symbols

#: Atoms closer than this (Å) are refused as overlapping (structures given by the user: ASE, LAMMPS, files).
MIN_DISTANCE_A = 0.1
#: Atoms closer than this (Å) are refused as coincident by the OpenMM force, which also sees its minimiser's
#: trial positions (module docstring).
COINCIDENT_DISTANCE_A = 0.01
#: Largest |coordinate| (Å) accepted for non-periodic structures.
MAX_COORDINATE_A = 1.0e4
#: Largest |fractional coordinate| accepted in a periodic cell.
MAX_CELL_IMAGES = 1.0e3


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
    """Total charge (e) and spin multiplicity 2S+1 must fit the electron count (rule: model/engine.py)."""
    from .model.engine import check_electron_parity

    check_electron_parity(int(np.sum(numbers)), charge, multiplicity)


def check_coordinates(numbers: Sequence[int], positions: np.ndarray, cell=None, pbc=None) -> None:
    """Finite coordinates (Å) within the bounds of the module docstring; cheap (O(N)), no neighbour list."""
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    bad = ~np.isfinite(positions).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"atom {i} ({symbol(int(numbers[i]))}): position is not finite: {positions[i]} Å")
    periodic = pbc is not None and bool(np.all(pbc))
    if periodic:
        cell = np.asarray(cell, dtype=np.float64)
        if abs(np.linalg.det(cell)) < 1e-12:
            raise InputError("periodic atoms need a cell with non-zero volume (Å^3)")
        frac = np.abs(np.linalg.solve(cell.T, positions.T).T)
        far = frac.max(axis=1) > MAX_CELL_IMAGES
        if far.any():
            i = int(np.flatnonzero(far)[0])
            raise InputError(
                f"atom {i} ({symbol(int(numbers[i]))}): position {positions[i]} Å is more than {MAX_CELL_IMAGES:g} "
                "cell lengths from the origin; wrap the positions into the cell"
            )
        return
    far = np.abs(positions).max(axis=1) > MAX_COORDINATE_A if len(positions) else np.zeros(0, bool)
    if far.any():
        i = int(np.flatnonzero(far)[0])
        raise InputError(
            f"atom {i} ({symbol(int(numbers[i]))}): position {positions[i]} Å is further than {MAX_COORDINATE_A:g} Å "
            "from the origin (non-periodic limit); is the unit right (Å), or did the atom fly off?"
        )


def check_overlaps(
    numbers: Sequence[int],
    src: np.ndarray,
    dst: np.ndarray,
    lengths: np.ndarray,
    min_distance_a: float = MIN_DISTANCE_A,
) -> None:
    """No edge i -> j shorter than ``min_distance_a`` (Å); edges and their lengths from the engine's pair list."""
    lengths = np.asarray(lengths, dtype=np.float64)
    if lengths.size == 0:
        return
    k = int(np.argmin(lengths))
    if lengths[k] < min_distance_a:
        i, j = int(src[k]), int(dst[k])
        raise InputError(
            f"atoms {i} ({symbol(int(numbers[i]))}) and {j} ({symbol(int(numbers[j]))}) overlap: "
            f"distance {lengths[k]:.4f} Å < {min_distance_a:g} Å"
        )


def check_positions(numbers: Sequence[int], positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> None:
    """:func:`check_coordinates`, then no two atoms closer than MIN_DISTANCE_A (minimum image under PBC)."""
    check_coordinates(numbers, positions, cell, pbc)
    positions = np.asarray(positions, dtype=np.float64)
    if len(positions) < 2:
        return
    from .model.graph import cutoff_pairs

    topo = cutoff_pairs(positions, cell, pbc, MIN_DISTANCE_A)
    if topo.n_edges:
        d = positions[topo.dst] - positions[topo.src] + topo.shifts @ np.asarray(cell, dtype=np.float64)
        check_overlaps(numbers, topo.src, topo.dst, np.linalg.norm(d, axis=1))
