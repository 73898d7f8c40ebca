"""Vertical charge/spin gaps at one geometry (eV): ionisation energy, electron affinity, singlet-triplet gap.

For every geometry labelled in all the needed states (frames sharing ``mol_id`` and ``geometry_id``):
  IE = E(+1, doublet) - E(0, singlet)      EA = E(0, singlet) - E(-1, doublet)      ST = E(0, triplet) - E(0, singlet)
Errors are model minus reference; the *mean predictor* is the error of predicting the evaluated set's mean
reference gap for every geometry (what a model that ignores the molecule would score).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .data import Frame

#: name -> (state whose energy is added, state whose energy is subtracted), states as (charge, multiplicity).
GAPS: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "ionisation_energy": ((1, 2), (0, 1)),
    "electron_affinity": ((0, 1), (-1, 2)),
    "singlet_triplet_gap": ((0, 3), (0, 1)),
}


def geometry_states(frames: Sequence[Frame], ids: Sequence[int]) -> dict[tuple[str, int], dict[tuple[int, int], int]]:
    """{(mol_id, geometry_id): {(charge, multiplicity): frame index}} for frames with a geometry id."""
    groups: dict[tuple[str, int], dict[tuple[int, int], int]] = {}
    for i in ids:
        f = frames[i]
        if f.geometry_id >= 0:
            groups.setdefault((str(f.mol_id), int(f.geometry_id)), {})[(int(f.charge), int(f.spin))] = i
    return groups


def vertical_gaps(
    frames: Sequence[Frame], preds: dict[int, tuple[float, np.ndarray]], ids: Sequence[int]
) -> dict[str, Any]:
    """Per gap: count, MAE (eV), mean signed error, mean-predictor MAE, mean reference gap."""
    groups = geometry_states(frames, ids)
    out: dict[str, Any] = {}
    for name, (plus, minus) in GAPS.items():
        ref, pred = [], []
        for states in groups.values():
            if plus in states and minus in states:
                a, b = states[plus], states[minus]
                ref.append(frames[a].energy - frames[b].energy)
                pred.append(preds[a][0] - preds[b][0])
        if not ref:
            continue
        ref_a, pred_a = np.array(ref), np.array(pred)
        out[name] = {
            "geometries": len(ref),
            "mae_eV": float(np.mean(np.abs(pred_a - ref_a))),
            "mean_error_eV": float(np.mean(pred_a - ref_a)),
            "mean_predictor_mae_eV": float(np.mean(np.abs(ref_a - ref_a.mean()))),
            "mean_reference_eV": float(ref_a.mean()),
        }
    return out


def format_vertical(result: dict[str, Any]) -> str:
    lines = [f"{'vertical gap':<22}{'geometries':>11}{'MAE eV':>9}{'bias eV':>9}{'mean-pred MAE':>15}"]
    for name, m in result.items():
        lines.append(
            f"{name:<22}{m['geometries']:>11d}{m['mae_eV']:>9.3f}{m['mean_error_eV']:>9.3f}"
            f"{m['mean_predictor_mae_eV']:>15.3f}"
        )
    return "\n".join(lines)
