"""Data card of a compact labelled set: counts by element/state/sampler/size, energy and force distributions.

    python -m transip_md.train.datacard transip_md/data/gfn2-organics-9el.npz --png docs/data-distributions.png

prints the counts as JSON (and the PNG: relative energy per atom and force components, by state and sampler).
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..validation import symbol
from .data import load_compact


def _mol_elements(a: dict[str, np.ndarray]) -> list[set[str]]:
    start = np.concatenate([[0], np.cumsum(a["mol_natoms"])])
    return [{symbol(int(z)) for z in a["mol_numbers"][start[k] : start[k + 1]]} for k in range(len(a["mol_id"]))]


def counts(path: str | os.PathLike) -> dict[str, Any]:
    """Molecules and frames by element, state, sampler, source and size; held-out counts; file size."""
    a = load_compact(path)
    els = _mol_elements(a)
    held = a["mol_heldout"]
    names = [str(s) for s in a["sampler_names"]]
    frame_natoms = a["mol_natoms"][a["frame_mol"]]
    by_el = Counter(e for s in els for e in s)
    by_el_held = Counter(e for s, h in zip(els, held, strict=True) if h for e in s)
    frames_by_el = Counter()
    per_mol_frames = np.bincount(a["frame_mol"], minlength=len(els))
    for s, n in zip(els, per_mol_frames, strict=True):
        frames_by_el.update({e: int(n) for e in s})
    sources = Counter(str(s).split(":")[0] for s in a["mol_source"])
    return {
        "file": str(path),
        "megabytes": round(Path(path).stat().st_size / 1e6, 2),
        "molecules": len(els),
        "frames": len(a["energy"]),
        "geometries": len(np.unique(a["geometry"])),
        "atoms_per_frame": {
            "min": int(frame_natoms.min()),
            "mean": round(float(frame_natoms.mean()), 1),
            "max": int(frame_natoms.max()),
        },
        "molecule_size_histogram": dict(Counter(int(n) // 5 * 5 for n in a["mol_natoms"]).most_common()),
        "molecules_by_element": dict(by_el.most_common()),
        "frames_by_element": dict(frames_by_el.most_common()),
        "heldout_molecules": int(held.sum()),
        "heldout_frames": int(held[a["frame_mol"]].sum()),
        "heldout_molecules_by_element": dict(by_el_held.most_common()),
        "frames_by_state": {
            f"{q:+d}/{m}": int(n)
            for (q, m), n in Counter(zip(a["charge"].tolist(), a["spin"].tolist(), strict=True)).items()
        },
        "frames_by_sampler": {names[k]: int(n) for k, n in Counter(a["sampler"].tolist()).items()},
        "molecules_by_source": dict(sources),
        "max_abs_force": float(np.abs(a["forces"]).max()),
        "meta": json.loads(str(a["meta"])),
    }


def relative_energy_per_atom(a: dict[str, np.ndarray]) -> np.ndarray:
    """Energy minus the lowest energy of the same molecule and state, per atom (eV/atom)."""
    key = a["frame_mol"].astype(np.int64) * 16 + (a["charge"].astype(np.int64) + 4) * 4 + a["spin"].astype(np.int64)
    order = np.argsort(key, kind="stable")
    _, first, inv = np.unique(key[order], return_index=True, return_inverse=True)
    mins = np.minimum.reduceat(a["energy"][order], first)
    rel = np.empty_like(a["energy"])
    rel[order] = a["energy"][order] - mins[inv]
    return rel / a["mol_natoms"][a["frame_mol"]]


def plot(path: str | os.PathLike, png: str | os.PathLike) -> None:
    """Three panels: relative energy per atom by sampler, |force| components by sampler, frames by state."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = load_compact(path)
    names = [str(s) for s in a["sampler_names"]]
    rel = relative_energy_per_atom(a)
    natoms = a["mol_natoms"][a["frame_mol"]]
    frame_of_atom = np.repeat(np.arange(len(natoms)), natoms)
    fmax = np.zeros(len(natoms))
    np.maximum.at(fmax, frame_of_atom, np.abs(a["forces"]).max(axis=1))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    used = sorted(set(a["sampler"].tolist()))
    for k in used:
        sel = a["sampler"] == k
        axes[0].hist(rel[sel], bins=np.linspace(0, 2.0, 81), histtype="step", label=f"{names[k]} ({sel.sum()})")
        axes[1].hist(fmax[sel], bins=np.logspace(-1, 2.1, 70), histtype="step", label=names[k])
    axes[0].set_xlabel("E - min(E of molecule, state) per atom (eV/atom)")
    axes[0].set_ylabel("frames")
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("largest |force component| of a frame (eV/Å)")
    axes[1].legend(fontsize=8)
    states = Counter(zip(a["charge"].tolist(), a["spin"].tolist(), strict=True))
    labels = [f"({q:+d}, {m})" for q, m in sorted(states)]
    axes[2].bar(labels, [states[s] for s in sorted(states)], color="tab:blue")
    axes[2].set_ylabel("frames")
    axes[2].set_xlabel("state (charge, multiplicity)")
    axes[2].set_title(f"{len(a['mol_id'])} molecules, {len(a['energy'])} frames")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="data card of a compact labelled set")
    ap.add_argument("path")
    ap.add_argument("--png", help="write the distributions figure here")
    args = ap.parse_args(argv)
    print(json.dumps(counts(args.path), indent=1))
    if args.png:
        plot(args.path, args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
