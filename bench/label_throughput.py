"""Labelling throughput: the compact sampler (classical geometries + GFN2-xTB single points) vs today's xTB MD.

Both label the same molecules (the first N of the shipped set's seeded selection, so all nine elements
appear) with GFN2-xTB (tblite, OMP_NUM_THREADS=1) on ``--workers`` processes, and the table reports
  frames/hour   kept frames / wall time of the run (embedding, sampling, labels, writing; the compact
                sampler's one-off choice of the 3,200 molecules, ~5 s per set, is left out)
  GFN2 share    time inside GFN2-xTB calls / worker time (compact: counted by the labeller; xTB MD: a
                one-process run of one molecule with a timing wrapper around tblite's ASE calculator)
  rejects       frames and molecules dropped, by cause (force cap, SCF failure, parity, embedding, ...)
The machine is shared, so the load average is printed beside the figures: compare the two rows, not runs.

    OMP_NUM_THREADS=1 .venv/bin/python bench/label_throughput.py                   # ~4 min, writes the table
    OMP_NUM_THREADS=1 .venv/bin/python bench/label_throughput.py --new 4 --old 1    # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "bench" / "results" / "label_throughput.md"


def _molecules(n: int):
    from transip_md.train.molecules import select_molecules

    return select_molecules(seed=0).molecules[:n]


def run_compact(n: int, workers: int, tmp: Path) -> dict:
    from transip_md.train.label import LabelConfig, run_labelling

    s = run_labelling(tmp / "compact.npz", LabelConfig(), workers=workers, progress=False, limit=n)
    wall = s["wall_seconds"] - s["selection_seconds"]  # choosing the 3,200 molecules: once per set
    rejects = {k: v for k, v in s.items() if k in _REJECT_KEYS and v}
    return {
        "sampler": "compact (MMFF MD + distortions + GFN2 single points)",
        "molecules": n,
        "frames": s["frames"],
        "wall_s": wall,
        "frames_per_hour": 3600.0 * s["frames"] / wall,
        "gfn2_calls_per_frame": (s["frames"] + sum(rejects.get(k, 0) for k in _GFN2_REJECTS)) / max(s["frames"], 1),
        "gfn2_share": s["xtb_seconds"] / max(s["seconds"], 1e-9),
        "rejects": rejects,
    }


_GFN2_REJECTS = ("force_cap", "scf_failure", "non_finite")
_REJECT_KEYS = (*_GFN2_REJECTS, "parity", "embedding_failed", "no_force_field", "unparsable_smiles", "md_unstable")
_REJECT_KEYS = (*_REJECT_KEYS, "element_not_in_xtb", "no_contact", "molecules_without_frames")


def run_xtb_md(n: int, workers: int, tmp: Path, molecules) -> dict:
    from transip_md.train import label_xtbmd as old

    smi = tmp / "old.smi"
    smi.write_text("".join(f"{m.smiles} {m.mol_id}\n" for m in molecules[:n]))
    cfg = old.LabelConfig(elements=("H", "C", "N", "O", "F", "P", "S", "Cl", "Br"), min_atoms=4, max_atoms=40)
    t0 = time.perf_counter()
    s = old.run_labelling(smi, tmp / "old.extxyz", cfg, workers=workers, progress=False)
    wall = time.perf_counter() - t0
    rejects = {k: s.get(k, 0) for k in ("rejected", "scf_failures", "parity_skipped", "no_conformer") if s.get(k)}
    return {
        "sampler": "xTB MD (today: 150 GFN2 Langevin steps per state, every 30th kept)",
        "molecules": n,
        "frames": s["total_frames"],
        "wall_s": wall,
        "frames_per_hour": 3600.0 * s["total_frames"] / wall,
        "gfn2_calls_per_frame": len(cfg.states) * cfg.n_steps * n / max(s["total_frames"], 1),
        "gfn2_share": gfn2_share_xtb_md(molecules[0], tmp),
        "rejects": rejects,
    }


def gfn2_share_xtb_md(molecule, tmp: Path) -> float:
    """Share of one molecule's xTB-MD labelling spent inside tblite (one process, timing wrapper)."""
    from tblite.ase import TBLite

    from transip_md.train import label_xtbmd as old

    spent = [0.0]
    original = TBLite.calculate

    def timed(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - t

    TBLite.calculate = timed
    try:
        cfg = old.LabelConfig(elements=tuple("H C N O F P S Cl Br".split()), min_atoms=4, max_atoms=40, n_steps=30)
        t0 = time.perf_counter()
        old.label_molecule(molecule.mol_id, molecule.smiles, 0, cfg)
        return spent[0] / (time.perf_counter() - t0)
    finally:
        TBLite.calculate = original


def write_table(rows: list[dict], args: argparse.Namespace, load: tuple[float, ...]) -> str:
    lines = [
        "# Labelling throughput (bench/label_throughput.py)",
        "",
        f"Same molecules for both samplers (the first molecules of the shipped set's seeded selection, all nine "
        f"elements possible), GFN2-xTB through tblite, {args.workers} processes x 1 thread (OMP_NUM_THREADS=1). "
        f"Load average at start/end: {load[0]:.1f} / {load[1]:.1f} on 2 cores shared with other jobs, so absolute "
        "rates are lower bounds: compare the rows.",
        "",
        "| sampler | molecules | frames | wall s | frames/hour | GFN2 calls per kept frame | GFN2 share of time "
        "| rejected / failed, by cause |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rej = ", ".join(f"{k} {v}" for k, v in sorted(r["rejects"].items())) or "none"
        lines.append(
            f"| {r['sampler']} | {r['molecules']} | {r['frames']} | {r['wall_s']:.0f} | {r['frames_per_hour']:,.0f} "
            f"| {r['gfn2_calls_per_frame']:.2f} | {100 * r['gfn2_share']:.0f} % | {rej} |"
        )
    lines += [
        "",
        f"Command: `OMP_NUM_THREADS=1 .venv/bin/python bench/label_throughput.py --new {args.new} "
        f"--old {args.old} --workers {args.workers}`",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new", type=int, default=24, help="molecules for the compact sampler")
    ap.add_argument("--old", type=int, default=2, help="molecules for the xTB MD sampler (~1 min each)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    load0 = os.getloadavg()[0]
    molecules = _molecules(max(args.new, args.old))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = [run_compact(args.new, args.workers, tmp), run_xtb_md(args.old, args.workers, tmp, molecules)]
    rows.append({"speedup": rows[0]["frames_per_hour"] / rows[1]["frames_per_hour"]})
    print(json.dumps(rows, indent=1))
    table = write_table(rows[:2], args, (load0, os.getloadavg()[0]))
    table += f"\nSpeed-up of the compact sampler in kept frames/hour: {rows[2]['speedup']:.1f}x.\n"
    print(table)
    if not args.no_write:
        RESULT.write_text(table)


if __name__ == "__main__":
    main()
