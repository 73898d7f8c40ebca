"""LAMMPS pair_style transip: time per MD step vs number of atoms on 1 and 2 MPI ranks, and the
plugin's time against the raw compiled model on the same atoms (bridge overhead ratio).

    python bench/lammps_scaling.py [--sizes 96,288,768] [--steps 20] [--model M.pt]

Writes bench/results/lammps_scaling.md. Boxes are water/methanol liquids (3.3 Å molecule spacing).
The raw-model time is one forward + backward (energy, edge gradients) on the same edge list that
LAMMPS would build, from Python, without LAMMPS (no neighbour list, no communication).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from transip_md.lammps.plugin import plugin_path
from transip_md.model import TransIPConfig, export, load_compiled, random_model
from transip_md.model.evaluate import DEFAULT_CHUNK
from transip_md.model.graph import cutoff_pairs, edge_index, edge_vectors
from transip_md.testing.lammps import molecule_box, setup_lines, write_data

RESULTS = Path(__file__).parent / "results" / "lammps_scaling.md"


def lammps_time(nprocs: int, data: Path, model: Path, steps: int, work: Path) -> float:
    """Seconds per MD step (NVE, 0.5 fs) from `run` after a warm-up run."""
    lines = ["processors * 1 1"] + setup_lines(
        data, "metal", [f"plugin load {plugin_path()}", f"pair_style transip {model}", "pair_coeff * * H C N O"]
    )
    lines += ["velocity all create 300 1 loop geom", "fix nve all nve", "timestep 0.0005", "thermo 1000", "run 2"]
    lines += ["variable t0 equal time", f"run {steps} pre no post no"]  # no setup force call in the timing
    script = work / f"bench_{nprocs}.py"
    script.write_text(
        "import json, sys, time\n"
        "from transip_md.testing.lammps import preload_and_import_lammps\n"
        "lammps = preload_and_import_lammps()\n"
        "lmp = lammps.lammps(cmdargs=['-log', 'none', '-screen', 'none', '-nocite'])\n"
        f"lines = {json.dumps(lines)}\n"
        "for line in lines[:-1]: lmp.command(line)\n"
        "lmp.command('run 0')\n"
        "t = time.perf_counter(); lmp.command(lines[-1]); dt = time.perf_counter() - t\n"
        "if lmp.extract_setting('world_rank') == 0: print('TIME', dt)\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [str(Path(sys.prefix) / "bin" / "mpiexec"), "-n", str(nprocs), sys.executable, str(script)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    return float(out.split("TIME")[1].split()[0]) / steps


def raw_model_time(atoms, model: Path, repeats: int) -> float:
    """Seconds for forward + backward of the compiled model on the periodic edge list (1 thread)."""
    cm = load_compiled(model)
    topo = cutoff_pairs(atoms.positions, atoms.cell.array, atoms.pbc, cm.cutoff)
    pos = torch.as_tensor(atoms.positions)
    cell = torch.as_tensor(atoms.cell.array)
    species = torch.as_tensor(atoms.numbers, dtype=torch.long)
    idx = edge_index(topo)
    args = (torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64))
    batch = torch.zeros(len(atoms), dtype=torch.long)
    best = float("inf")
    for _ in range(repeats + 1):
        vec = edge_vectors(pos, cell, topo).detach().requires_grad_(True)
        t = time.perf_counter()
        with torch.jit.optimized_execution(False):  # as the engines run it
            cm.module.energy_and_gradient(species, idx, vec, *args, batch, -1, DEFAULT_CHUNK)  # engines' entry point
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="3,4,6", help="molecules per box edge (x3: 2 water/methanol kinds)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--model", help="compiled model (default: the shipped model, else a random cutoff-5 model)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (1 rank, 2 ranks, raw); best of each")
    args = p.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="lammps_bench_"))
    if args.model:
        model, label = Path(args.model), args.model
    else:
        from transip_md.data import default_model_path

        model = default_model_path()
        label = "shipped model"
        if not model.is_file():
            model = export(random_model(TransIPConfig(cutoff=5.0), seed=0), work / "random5.pt")
            label = "random local model (cutoff 5 Å, d_model 64, 2 layers, float32)"
    rows = []
    for grid in [int(g) for g in args.sizes.split(",")]:
        atoms = molecule_box(["H2O", "CH3OH"], grid=grid, spacing=3.3, seed=7)
        data = write_data(work / f"box{grid}.data", atoms)
        t1 = t2 = raw = float("inf")
        for _ in range(args.rounds):  # alternate, keep the best of each: the shared CPU's noise is +-15 %
            t1 = min(t1, lammps_time(1, data, model, args.steps, work))
            t2 = min(t2, lammps_time(2, data, model, args.steps, work))
            raw = min(raw, raw_model_time(atoms, model, repeats=2))
        rows.append((len(atoms), t1, t2, raw))
        print(
            f"{len(atoms)} atoms: 1 rank {t1 * 1e3:.1f} ms/step, 2 ranks {t2 * 1e3:.1f}, raw model {raw * 1e3:.1f} ms"
        )
    lines = [
        "# LAMMPS pair_style transip scaling",
        "",
        f"Model: {label}. Boxes: water/methanol liquid, 3.3 Å molecule spacing. NVE, 0.5 fs, {args.steps} steps after",
        "warm-up; one torch thread per rank (OMP_NUM_THREADS=1). Raw model: the file's energy_and_gradient on the",
        "same periodic edge list from Python, one thread. The three measurements alternate for "
        f"{args.rounds} rounds and",
        "the best of each is kept. Overhead ratio = plugin 1-rank step / raw model. Machine: 2-core CPU.",
        "",
        "| atoms | 1 rank ms/step | 2 ranks ms/step | speed-up | raw model ms | overhead ratio |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for n, t1, t2, raw in rows:
        lines.append(f"| {n} | {t1 * 1e3:.1f} | {t2 * 1e3:.1f} | {t1 / t2:.2f} | {raw * 1e3:.1f} | {t1 / raw:.2f} |")
    lines.append("")
    lines.append(
        f"Command: `python bench/lammps_scaling.py --sizes {args.sizes} --steps {args.steps} --rounds {args.rounds}`"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
