"""OpenMM bridge overhead: MD steps/s through TransIPForce against the raw compiled model's forward+backward.

For water clusters of 20, 100, 500 (and, with the torch backend, 1000) atoms at liquid density, with a
random-weight local model (cutoff 5 Å, float32 by default), it times
  raw     the compiled model's energy_and_gradient (forward + backward, chunked) on a prebuilt edge list
          (no neighbour search),
  python  OpenMM VerletIntegrator steps with TransIPForce(backend='python') (PythonForce callback),
  torch   the same with TransIPForce(backend='torch') (openmm-torch TorchForce; needs openmmtorch), with the
          default Verlet skin (DEFAULT_SKIN_ANGSTROM in transip_md/openmm/torch_module.py: the pair list is
          reused between steps until an atom has moved about half the skin),
and reports steps/s and the ratio raw/OpenMM time (the bridge overhead, neighbour search included).

The main venv (torch 2.13) has no openmm-torch: run there, the script also runs itself in
build/openmmtorch-venv (torch 2.12 + openmm-torch) for the torch backend and merges the rows.

    .venv/bin/python bench/openmm_overhead.py                 # table + bench/results/openmm_overhead.md
    .venv/bin/python bench/openmm_overhead.py --sizes 20 100 --threads 1 --platform CPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform as pyplatform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def water_cluster(n_atoms: int, seed: int = 0) -> tuple[list[int], np.ndarray]:
    """n_atoms // 3 water molecules on a jittered cubic grid at ~1 g/cm^3 (3.1 Å spacing), Å."""
    rng = np.random.default_rng(seed)
    n_mol = max(1, n_atoms // 3)
    side = int(np.ceil(n_mol ** (1 / 3)))
    grid = np.array([(i, j, k) for i in range(side) for j in range(side) for k in range(side)][:n_mol]) * 3.1
    numbers, pos = [], []
    for c in grid:
        c = c + rng.normal(scale=0.1, size=3)
        rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        for z, p in ((8, [0, 0, 0]), (1, [0.9572, 0, 0]), (1, [-0.24, 0.927, 0])):
            numbers.append(z)
            pos.append(c + rot @ np.array(p))
    while len(numbers) < n_atoms:  # pad with H2 fragments to the exact size (even electron count)
        c = grid.max(0) + 3.1 + rng.normal(scale=0.5, size=3) + len(numbers) * np.array([0.0, 0.0, 1.6])
        numbers += [1, 1][: n_atoms - len(numbers)]
        pos += [c, c + [0.74, 0, 0]][: len(numbers) - len(pos)]
    if sum(numbers) % 2:
        numbers[-1] = 8 if numbers[-1] == 1 else 1
    return numbers, np.array(pos)


def time_raw(model, numbers, pos, min_time: float) -> float:
    """Seconds per forward+backward of the compiled model on a fixed edge list."""
    import torch

    from transip_md.model.evaluate import topology
    from transip_md.model.graph import edge_index

    topo = topology(model, pos, np.zeros((3, 3)), np.zeros(3, bool))
    ei = edge_index(topo)
    vec0 = torch.as_tensor(pos[topo.dst] - pos[topo.src], dtype=model.dtype)
    species = torch.as_tensor(numbers)
    q = torch.zeros(1, dtype=torch.float64)
    s = torch.ones(1, dtype=torch.float64)
    batch = torch.zeros(len(numbers), dtype=torch.long)

    from transip_md.model.evaluate import DEFAULT_CHUNK

    def once():  # the engines' inference entry point (chunked for local models)
        with torch.jit.optimized_execution(False):  # as the engines run it
            model.module.energy_and_gradient(species, ei, vec0.clone(), q, s, batch, -1, DEFAULT_CHUNK)

    return _timeit(once, min_time)


def _timeit(fn, min_time: float, warm: int = 5) -> float:
    """Median seconds per call after ``warm`` calls (TorchScript's profiling executor optimises the graph
    during its first calls; the median resists the noise of a shared machine)."""
    for _ in range(warm):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_time or len(times) < 5:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def time_openmm(path, numbers, pos, backend, platform, threads, min_time: float) -> float:
    """Seconds per VerletIntegrator step with TransIPForce(backend)."""
    import openmm
    import openmm.app

    from transip_md.openmm import TransIPForce

    system = openmm.System()
    for z in numbers:
        system.addParticle(openmm.app.Element.getByAtomicNumber(z).mass)
    system.addForce(TransIPForce(path, atomic_numbers=numbers, backend=backend, device="cpu"))
    props = {"Threads": str(threads)} if platform == "CPU" else {}
    integrator = openmm.VerletIntegrator(0.0005)
    ctx = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform), props)
    ctx.setPositions(pos * 0.1)
    return _timeit(lambda: integrator.step(1), min_time)


def run(args) -> list[dict]:
    import torch

    from transip_md.model import TransIPConfig, export, load_compiled, random_model
    from transip_md.openmm.force import openmmtorch_available

    torch.set_num_threads(args.threads)
    cfg = TransIPConfig(cutoff=5.0, dtype=args.dtype, d_model=args.d_model, n_layers=2, n_heads=4, elements=[1, 8])
    path = args.model or str(export(random_model(cfg, seed=0), Path(tempfile.mkdtemp()) / "bench.pt"))
    model = load_compiled(path)
    rows = []
    for n in args.sizes:
        numbers, pos = water_cluster(n)
        row = {"atoms": n, "torch": torch.__version__}
        if "raw" in args.backends:
            row["raw_s"] = time_raw(model, numbers, pos, args.min_time)
        for backend in ("python", "torch"):
            if backend not in args.backends:
                continue
            if backend == "torch" and not openmmtorch_available():
                continue
            if backend == "python" and n > args.max_python_atoms:
                continue
            row[f"{backend}_s"] = time_openmm(path, numbers, pos, backend, args.platform, args.threads, args.min_time)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    return rows


def table(rows: list[dict], args) -> str:
    head = (
        "| atoms | raw fwd+bwd (ms) | python: steps/s | python overhead | torch: steps/s | torch overhead "
        "| torch / python speed |\n"
        "|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for r in sorted(rows, key=lambda r: r["atoms"]):
        raw = r.get("raw_s")
        cells = [str(r["atoms"]), f"{raw * 1e3:.2f}" if raw else "-"]
        for b in ("python", "torch"):
            t = r.get(f"{b}_s")
            ref = r.get("raw_torch_venv_s", raw) if b == "torch" else raw
            cells += [f"{1 / t:.1f}" if t else "-", f"{t / ref:.2f}x" if t and ref else "-"]
        tp, tt = r.get("python_s"), r.get("torch_s")
        cells.append(f"{tp / tt:.2f}x" if tp and tt else "-")
        lines.append("| " + " | ".join(cells) + " |")
    torch_versions = sorted({r.get("torch_backend_version", r["torch"]) for r in rows})
    from transip_md.openmm.torch_module import DEFAULT_SKIN_ANGSTROM

    note = (
        f"\nCPU ({pyplatform.processor() or pyplatform.machine()}, {os.cpu_count()} cores shared), "
        f"{args.threads} torch/OpenMM thread(s), OpenMM platform {args.platform}, local model cutoff 5 Å "
        f"d_model={args.d_model} 2 layers {args.dtype}, water clusters (no PBC). 'overhead' = OpenMM step time / "
        f"raw forward+backward time of the same venv's torch (neighbour search and the bridge included; "
        f"raw ms shown are the main venv's, except rows measured only in the second venv). python backend: main venv "
        f"(torch {rows[0]['torch'] if rows else '?'}); torch backend: openmm-torch TorchForce in "
        f"build/openmmtorch-venv (torch {', '.join(torch_versions)}), "
        f"Verlet skin {DEFAULT_SKIN_ANGSTROM} Å (the default).\n"
    )
    return head + "\n".join(lines) + "\n" + note


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[20, 100, 500])
    p.add_argument("--torch-sizes", type=int, nargs="+", default=[20, 100, 500, 1000])
    p.add_argument("--backends", nargs="+", default=["raw", "python", "torch"])
    p.add_argument("--max-python-atoms", type=int, default=500)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--platform", default="CPU")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--min-time", type=float, default=1.0, help="seconds of timing per measurement")
    p.add_argument("--model", help="use this compiled model (elements H, O) instead of a random one")
    p.add_argument("--json", action="store_true", help="print rows as JSON (used for the second venv)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "openmm_overhead.md"))
    p.add_argument("--no-second-venv", action="store_true")
    args = p.parse_args()
    rows = run(args)
    if args.json:
        print(json.dumps(rows))
        return 0
    venv_py = ROOT / "build" / "openmmtorch-venv" / "bin" / "python"
    if "torch" in args.backends and not args.no_second_venv and venv_py.exists():
        cmd = [
            str(venv_py),
            __file__,
            "--json",
            "--backends",
            "raw",
            "torch",
            "--sizes",
            *map(str, args.torch_sizes),
            "--threads",
            str(args.threads),
            "--platform",
            args.platform,
            "--dtype",
            args.dtype,
            "--d-model",
            str(args.d_model),
            "--min-time",
            str(args.min_time),
        ]
        out = subprocess.run(
            cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        )
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
        else:
            extra = json.loads(out.stdout.strip().splitlines()[-1])
            by_n = {r["atoms"]: r for r in rows}
            for r in extra:
                target = by_n.setdefault(r["atoms"], {"atoms": r["atoms"], "torch": rows[0]["torch"]})
                target["torch_s"] = r.get("torch_s")
                target["torch_backend_version"] = r["torch"]
                target["raw_torch_venv_s"] = r["raw_s"]  # the torch overhead is measured against this venv's raw
                if "raw_s" not in target:
                    target["raw_s"] = r["raw_s"]
            rows = list(by_n.values())
    text = table(rows, args)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("# OpenMM bridge overhead (bench/openmm_overhead.py)\n\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
