"""PNG plots of a run: learning curves and energy/force parity (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..atomic_io import atomic_write
from ..units import MEV_PER_EV


def _save(fig, path: str | Path) -> None:
    """Write ``fig`` as PNG atomically (a killed run never leaves a torn image)."""
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curves(history: Sequence[dict], path: str | Path) -> None:
    plt = _plt()
    ep = [h["epoch"] for h in history]
    panels = [
        ("train_loss", "training loss"),
        ("val_force_mae_meV_per_A", "val force MAE (meV/Å)"),
        ("val_energy_mae_meV_per_atom", "val energy MAE (meV/atom)"),
        ("val_sym_force_rms_meV_per_A", "symmetry error, forces (meV/Å)"),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
    for ax, (key, title) in zip(axes, panels, strict=True):
        ys = [h.get(key, np.nan) for h in history]
        ax.plot(ep, ys, "o-")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if all(np.isfinite(y) and y > 0 for y in ys):
            ax.set_yscale("log")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def parity_plots(frames, preds: dict, path: str | Path) -> None:
    plt = _plt()
    e_ref, e_pred, f_ref, f_pred = [], [], [], []
    for i, (e, f) in preds.items():
        n = frames[i].n_atoms
        e_ref.append(frames[i].energy / n)
        e_pred.append(e / n)
        f_ref.append(frames[i].forces.ravel())
        f_pred.append(f.ravel())
    e_ref, e_pred = np.array(e_ref), np.array(e_pred)
    f_ref, f_pred = np.concatenate(f_ref), np.concatenate(f_pred)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for ax, x, y, label in ((axes[0], e_ref, e_pred, "energy (eV/atom)"), (axes[1], f_ref, f_pred, "force (eV/Å)")):
        ax.scatter(x, y, s=3, alpha=0.5)
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        mae = float(np.abs(x - y).mean())
        ax.set_title(f"{label}: MAE {mae * MEV_PER_EV:.1f} m")
        ax.set_xlabel("reference")
        ax.set_ylabel("TransIP")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
