"""The energy baseline fitted before training: per-element and per-charge/spin-state energies (eV).

E_b ~ sum_z n_bz e_z + w . [Q_b, Q_b^2, M_b - 1, (M_b - 1)^2] by least squares over the training frames, so the
network starts from residuals of a few eV per molecule instead of the total energy, and the state energy
(model/priors.py StateEnergy, linear part) starts at the data's mean vertical gaps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .data import Frame


@dataclass
class EnergyBaseline:
    element_energies: np.ndarray  # (n_elements,) eV, in the model's element order
    state_weights: np.ndarray  # (4,) eV per [Q, Q^2, M - 1, (M - 1)^2]
    force_rms: float  # eV/Å, RMS force component of the training frames


def state_features(charge: float, multiplicity: float) -> np.ndarray:
    """[Q, Q^2, M - 1, (M - 1)^2], the same features as StateEnergy.features."""
    s = multiplicity - 1.0
    return np.array([charge, charge * charge, s, s * s], dtype=np.float64)


def fit_energy_baseline(frames: Sequence[Frame], ids: Sequence[int], elements: Sequence[int]) -> EnergyBaseline:
    """Least-squares element and state energies on frames ``ids``; absent elements get the mean energy per atom."""
    col = {z: k for k, z in enumerate(elements)}
    n_el = len(elements)
    a = np.zeros((len(ids), n_el + 4))
    y = np.zeros(len(ids))
    for r, i in enumerate(ids):
        frame = frames[i]
        np.add.at(a[r], [col[int(z)] for z in frame.numbers], 1.0)
        a[r, n_el:] = state_features(float(frame.charge), float(frame.spin))
        y[r] = frame.energy
    present = np.concatenate([a[:, :n_el].sum(0) > 0, np.abs(a[:, n_el:]).sum(0) > 0])
    solution = np.zeros(n_el + 4)
    solution[present] = np.linalg.lstsq(a[:, present], y, rcond=None)[0]
    atoms = a[:, :n_el].sum()
    absent = ~present[:n_el]
    solution[:n_el][absent] = y.sum() / atoms if atoms else 0.0
    forces = np.concatenate([frames[i].forces.ravel() for i in ids]) if len(ids) else np.zeros(1)
    return EnergyBaseline(solution[:n_el], solution[n_el:], float(np.sqrt(np.mean(forces**2))))
