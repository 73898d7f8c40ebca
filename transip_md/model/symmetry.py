"""Measure how far a (non-equivariant) TransIP model is from SO(3) symmetry."""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms
from scipy.spatial.transform import Rotation

from ..units import MEV_PER_EV
from .compiled import CompiledModel
from .evaluate import model_device, predict
from .transip import TransIP


def haar_rotations(n: int, seed: int = 0) -> np.ndarray:
    """n rotation matrices (n, 3, 3) drawn from the uniform (Haar) measure on SO(3), NumPy, for symmetry checks
    (the training augmentation draws its own in torch: :func:`transip_md.train.losses.random_rotations`)."""
    return Rotation.random(n, random_state=seed).as_matrix()


def symmetry_error(
    model: CompiledModel | TransIP, atoms: Atoms, n_rotations: int = 16, seed: int = 0
) -> dict[str, Any]:
    """Spread of the energy and of rotated-back forces over random rotations of ``atoms``.

    Each rotation R is applied about the centre of mass (and to the cell for periodic systems).
    Returns ``energy_std_meV`` and ``energy_range_meV`` (spread of E(Rx)), ``force_rms_meV_per_A``
    (RMS over rotations, atoms and components of R^T F(Rx) minus its mean over rotations) and
    ``force_max_meV_per_A``. An exactly invariant model gives zeros.
    """
    charge = int(atoms.info.get("charge", 0))
    spin = int(atoms.info.get("spin", 1))
    device = model_device(model)  # evaluated where the model is
    centre = atoms.get_center_of_mass()
    energies, forces_back = [], []
    for rot in haar_rotations(n_rotations, seed):
        pos = (atoms.positions - centre) @ rot.T + centre
        cell = np.asarray(atoms.cell) @ rot.T
        pred = predict(model, atoms.numbers, pos, cell, atoms.pbc, charge, spin, device=device)
        energies.append(pred.energy)
        forces_back.append(pred.forces @ rot)  # R^T F for row vectors
    e = np.array(energies)
    f = np.array(forces_back)
    dev = f - f.mean(axis=0, keepdims=True)
    return {
        "n_rotations": n_rotations,
        "energy_std_meV": float(e.std() * MEV_PER_EV),
        "energy_range_meV": float((e.max() - e.min()) * MEV_PER_EV),
        "force_rms_meV_per_A": float(np.sqrt((dev**2).mean()) * MEV_PER_EV),
        "force_max_meV_per_A": float(np.abs(dev).max() * MEV_PER_EV),
    }
