"""Prediction over a set of frames and error metrics (meV, meV/atom, meV/Å), also per charge/spin state, sampler
and element."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..model.evaluate import model_device
from ..units import MEV_PER_EV
from .data import Frame, TopologyCache, collate, frame_to_atoms, make_batches
from .losses import evaluate_batch


def predict_frames(
    model: torch.nn.Module, frames: Sequence[Frame], ids: Sequence[int], topologies: TopologyCache, max_atoms: int
) -> dict[int, tuple[float, np.ndarray]]:
    """{frame id: (energy eV, forces eV/Å)} for ``ids`` (batched, no parameter gradients), on the model's device."""
    device = model_device(model)
    out: dict[int, tuple[float, np.ndarray]] = {}
    for group in make_batches(ids, frames, max_atoms):
        batch = collate(group, frames, topologies).to(device)
        res = evaluate_batch(model, batch, training=False)
        e = res.energy.detach().cpu().numpy()
        f = res.forces.detach().cpu().numpy()
        start = 0
        for b, i in enumerate(group):
            n = frames[i].n_atoms
            out[i] = (float(e[b]), f[start : start + n])
            start += n
    return out


def error_sums(frames: Sequence[Frame], preds: dict[int, tuple[float, np.ndarray]]) -> np.ndarray:
    """[n_frames, n_atoms, sum|dE|, sum dE^2, sum|dE|/n, sum (dE/n)^2, n_force_comp, sum|dF|, sum dF^2] (eV)."""
    s = np.zeros(9)
    for i, (e, f) in preds.items():
        fr = frames[i]
        de = e - fr.energy
        df = f - fr.forces
        s += [1, fr.n_atoms, abs(de), de**2, abs(de) / fr.n_atoms, (de / fr.n_atoms) ** 2, df.size, np.abs(df).sum(),
              (df**2).sum()]  # fmt: skip
    return s


def metrics_from_sums(s: np.ndarray) -> dict[str, float]:
    n, _, ae, se, aea, sea, nf, af, sf = s
    n = max(n, 1.0)
    nf = max(nf, 1.0)
    return {
        "energy_mae_meV": float(MEV_PER_EV * ae / n),
        "energy_rmse_meV": float(MEV_PER_EV * np.sqrt(se / n)),
        "energy_mae_meV_per_atom": float(MEV_PER_EV * aea / n),
        "energy_rmse_meV_per_atom": float(MEV_PER_EV * np.sqrt(sea / n)),
        "force_mae_meV_per_A": float(MEV_PER_EV * af / nf),
        "force_rmse_meV_per_A": float(MEV_PER_EV * np.sqrt(sf / nf)),
        "frames": int(s[0]),
    }


def _grouped_metrics(
    frames: Sequence[Frame], preds: dict[int, tuple[float, np.ndarray]], key: Callable[[Frame], str]
) -> dict[str, Any]:
    """Metrics of each group of frames with the same non-empty ``key(frame)``, in sorted key order."""
    groups: dict[str, dict[int, tuple[float, np.ndarray]]] = {}
    for i, p in preds.items():
        name = key(frames[i])
        if name:
            groups.setdefault(name, {})[i] = p
    return {k: metrics_from_sums(error_sums(frames, g)) for k, g in sorted(groups.items())}


def per_state_metrics(frames: Sequence[Frame], preds: dict[int, tuple[float, np.ndarray]]) -> dict[str, Any]:
    """Metrics for each (charge, multiplicity) state, keyed ``"+1/2"``."""
    return _grouped_metrics(frames, preds, lambda f: f"{f.charge:+d}/{f.spin}")


def per_sampler_metrics(frames: Sequence[Frame], preds: dict[int, tuple[float, np.ndarray]]) -> dict[str, Any]:
    """Metrics for each sampler that made the geometries (thermal, stretch_bond, ...; compact .npz data).

    Frames without a sampler name (extxyz, ASE databases) are left out; empty when none has one.
    """
    return _grouped_metrics(frames, preds, lambda f: f.sampler)


def per_element_force_metrics(frames: Sequence[Frame], preds: dict[int, tuple[float, np.ndarray]]) -> dict[str, Any]:
    """Force errors on the atoms of each element (meV/Å per Cartesian component), keyed by symbol in Z order.

    ``zero_force_mae_meV_per_A`` is the mean |F| of the reference: the MAE of predicting zero forces.
    """
    from ase.data import chemical_symbols

    sums: dict[int, np.ndarray] = {}  # Z -> [atoms, components, sum|dF|, sum dF^2, sum|F|]
    for i, (_, f) in preds.items():
        fr = frames[i]
        df = f - fr.forces
        for z in np.unique(fr.numbers):
            sel = fr.numbers == z
            s = sums.setdefault(int(z), np.zeros(5))
            s += [sel.sum(), 3 * sel.sum(), np.abs(df[sel]).sum(), (df[sel] ** 2).sum(), np.abs(fr.forces[sel]).sum()]
    return {
        chemical_symbols[z]: {
            "atoms": int(s[0]),
            "force_mae_meV_per_A": float(MEV_PER_EV * s[2] / s[1]),
            "force_rmse_meV_per_A": float(MEV_PER_EV * np.sqrt(s[3] / s[1])),
            "zero_force_mae_meV_per_A": float(MEV_PER_EV * s[4] / s[1]),
        }
        for z, s in sorted(sums.items())
    }


def symmetry_metrics(model, frames: Sequence[Frame], ids: Sequence[int], n_rotations: int, seed: int = 0) -> dict:
    """Mean over ``ids`` of transip_md.model.symmetry_error (meV, meV/Å)."""
    from ..model import symmetry_error

    if not ids:
        return {}
    rows = [symmetry_error(model, frame_to_atoms(frames[i]), n_rotations=n_rotations, seed=seed + k)
            for k, i in enumerate(ids)]  # fmt: skip
    return {
        "sym_energy_std_meV": float(np.mean([r["energy_std_meV"] for r in rows])),
        "sym_force_rms_meV_per_A": float(np.mean([r["force_rms_meV_per_A"] for r in rows])),
    }
