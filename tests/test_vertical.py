"""Vertical charge/spin gaps (transip_md/train/vertical.py) on frames with known energies."""

from __future__ import annotations

import numpy as np

from transip_md.train.data import Frame
from transip_md.train.vertical import vertical_gaps


def _frame(mol: str, geometry: int, charge: int, spin: int, energy: float) -> Frame:
    z = np.array([6, 1, 1, 1, 1])
    return Frame(z, np.zeros((5, 3)), energy, np.zeros((5, 3)), charge, spin, mol, geometry_id=geometry)


def test_vertical_gaps_pair_the_states_of_one_geometry():
    rng = np.random.default_rng(0)
    frames, preds, truth = [], {}, {"ionisation_energy": [], "electron_affinity": [], "singlet_triplet_gap": []}
    for m in range(4):
        for g in range(2):
            e = {(0, 1): -100.0 * (m + 1) + g, (1, 2): 0.0, (-1, 2): 0.0, (0, 3): 0.0}
            e[(1, 2)] = e[(0, 1)] + rng.uniform(8, 11)
            e[(-1, 2)] = e[(0, 1)] - rng.uniform(-1, 1)
            e[(0, 3)] = e[(0, 1)] + rng.uniform(3, 6)
            truth["ionisation_energy"].append(e[(1, 2)] - e[(0, 1)])
            truth["electron_affinity"].append(e[(0, 1)] - e[(-1, 2)])
            truth["singlet_triplet_gap"].append(e[(0, 3)] - e[(0, 1)])
            for state, energy in e.items():
                frames.append(_frame(f"mol{m}", g, *state, energy))
                # a model that is exact for the neutral singlet and 0.25 eV too high for every other state
                preds[len(frames) - 1] = (energy + (0.0 if state == (0, 1) else 0.25), np.zeros((5, 3)))
    frames.append(_frame("lonely", 0, 1, 2, -5.0))  # no neutral partner: must not be paired
    preds[len(frames) - 1] = (0.0, np.zeros((5, 3)))
    out = vertical_gaps(frames, preds, list(range(len(frames))))
    assert out["ionisation_energy"]["geometries"] == 8
    np.testing.assert_allclose(out["ionisation_energy"]["mae_eV"], 0.25, atol=1e-12)
    np.testing.assert_allclose(out["electron_affinity"]["mean_error_eV"], -0.25, atol=1e-12)
    np.testing.assert_allclose(out["singlet_triplet_gap"]["mean_error_eV"], 0.25, atol=1e-12)
    for name, values in truth.items():
        v = np.array(values)
        np.testing.assert_allclose(out[name]["mean_reference_eV"], v.mean(), atol=1e-9)
        np.testing.assert_allclose(out[name]["mean_predictor_mae_eV"], np.abs(v - v.mean()).mean(), atol=1e-9)
