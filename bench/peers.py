"""TransIP against MACE-small, side by side, through the raw model, ASE, OpenMM and LAMMPS.

    python bench/peers.py                     # 21-atom molecule, ~100/1000/5000-atom water boxes
    python bench/peers.py --sizes 21,100 --repeats 2

Every (engine, model, structure) measurement runs in its own subprocess (fresh peak-RSS reading) and the
two models alternate within one run, so the TransIP/MACE ratios compare like with like. MACE-small is
built locally with mace-torch at the published 'small' size (128x0e hidden irreps, max_ell 3,
correlation 3, 2 interactions, 8 Bessel functions) with random weights, same cutoff and dtype as the
TransIP model. TransIP: the shipped model (or --model PATH). Needs `pip install mace-torch` (not a test
dependency). Results: printed and written to bench/results/peers.md (+ peers.json).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


# ---------------------------------------------------------------------------------------- structures
def structure(n_target: int):
    """21 -> aspirin (21 atoms, isolated); otherwise a periodic water box of about n_target atoms."""
    from ase import Atoms

    if n_target == 21:
        from rdkit import Chem
        from rdkit.Chem import AllChem

        mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)Oc1ccccc1C(=O)O"))
        AllChem.EmbedMolecule(mol, randomSeed=7)
        AllChem.MMFFOptimizeMolecule(mol)
        pos = mol.GetConformer().GetPositions()
        return Atoms([a.GetAtomicNum() for a in mol.GetAtoms()], positions=pos)
    from transip_md.testing.lammps import molecule_box

    grid = max(2, round((n_target / 3) ** (1 / 3)))
    return molecule_box(["H2O"], grid, spacing=3.1, seed=grid)


# ---------------------------------------------------------------------------------------- models
def mace_small(cutoff: float, dtype: str):
    """MACE-small (published 'small' size: 128x0e, max_ell 3, correlation 3), random weights, H/C/N/O."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from mace_peer import build_mace

    torch.manual_seed(0)
    model = build_mace([1, 6, 7, 8], np.zeros(4), 0.0, 1.0, cutoff, hidden="128x0e", avg_num_neighbors=30.0)
    return model.to(torch.float64 if dtype == "float64" else torch.float32).eval()


def transip_model_path(arg: str | None) -> str:
    if arg:
        return arg
    from transip_md.data import default_model_path

    return str(default_model_path())


# ---------------------------------------------------------------------------------------- workers
def _time(fn, repeats: int) -> float:
    for _ in range(3):  # warm-up: TorchScript profiles and optimises during the first calls
        fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def work(job: dict) -> dict:
    """One measurement in this process: seconds per force call, or per MD step for engines."""
    import torch

    torch.set_num_threads(job["threads"])
    atoms = structure(job["size"])
    reps = job["repeats"]
    out = {"atoms": len(atoms)}
    if job["model"] == "transip":
        from transip_md.model import load_compiled

        compiled = load_compiled(job["transip"])
        cutoff, dtype = compiled.cutoff, compiled.metadata["dtype"]
    else:
        cutoff, dtype = job["cutoff"], job["dtype"]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    engine = job["engine"]
    if engine == "raw" and job["model"] == "transip":
        from transip_md.model import predict

        def call():
            predict(compiled, atoms.numbers, atoms.positions, atoms.cell, atoms.pbc)

        out["seconds"] = _time(call, reps)
        out.update(_flops_transip(compiled, atoms))
    elif engine == "raw":
        out["seconds"], flops = _mace_raw(mace_small(cutoff, dtype), atoms, cutoff, reps)
        out["flops"] = flops
    elif engine == "ase":
        if job["model"] == "transip":
            from transip_md.ase import TransIPCalculator

            atoms.calc = TransIPCalculator(compiled)
        else:
            from mace.calculators import MACECalculator

            atoms.calc = MACECalculator(models=mace_small(cutoff, dtype), device="cpu", default_dtype=dtype)
        rng = np.random.default_rng(0)

        def call():
            atoms.positions += rng.normal(scale=1e-4, size=atoms.positions.shape)
            atoms.get_forces()

        out["seconds"] = _time(call, reps)
    elif engine == "openmm":
        out["seconds"] = _openmm_step(job, atoms, reps)
    elif engine == "lammps":
        out["seconds"] = _lammps_step(job, atoms, reps)
    else:
        raise ValueError(engine)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["rss_increase_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    return out


class FlopCounter:
    """Counts matrix-multiply/attention FLOPs of every aten op run inside it (torch's FLOP formulas).

    torch's FlopCounterMode tracks modules with backward hooks that clash with autograd.grad; this
    dispatch mode only sums the registered formulas. Element-wise ops are not counted (as in torch's).
    """

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils.flop_counter import flop_registry

        counter = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                packet = func._overloadpacket
                if packet in flop_registry:
                    counter.total += flop_registry[packet](*args, **kwargs, out_val=out)
                return out

        self.total = 0
        self._mode = _Mode()

    def __enter__(self):
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self._mode.__exit__(*exc)


def _flops_transip(compiled, atoms) -> dict:
    """FLOPs of one energy+force evaluation (forward and backward) of the compiled model."""
    from transip_md.model import predict

    with FlopCounter() as counter:
        predict(compiled, atoms.numbers, atoms.positions, atoms.cell, atoms.pbc)
    return {"flops": counter.total}


def _mace_raw(model, atoms, cutoff: float, reps: int) -> tuple[float, int]:
    from mace import data as mace_data
    from mace.tools import torch_geometric, utils

    z_table = utils.AtomicNumberTable([1, 6, 7, 8])
    cfg = mace_data.config_from_atoms(atoms)
    graph = mace_data.AtomicData.from_config(cfg, z_table=z_table, cutoff=cutoff)
    batch = torch_geometric.batch.Batch.from_data_list([graph]).to_dict()
    dtype = next(model.parameters()).dtype
    batch = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in batch.items()}

    def call():
        model(dict(batch), training=False, compute_force=True)

    seconds = _time(call, reps)
    with FlopCounter() as counter:
        call()
    return seconds, counter.total


def _openmm_step(job: dict, atoms, reps: int) -> float:
    import openmm
    from openmm import unit

    system = openmm.System()
    for m in atoms.get_masses():
        system.addParticle(m)
    periodic = bool(atoms.pbc.any())
    if periodic:
        system.setDefaultPeriodicBoxVectors(*[openmm.Vec3(*v) * 0.1 for v in np.asarray(atoms.cell)])
    if job["model"] == "transip":
        from transip_md.openmm import TransIPForce

        force = TransIPForce(
            job["transip"], atomic_numbers=atoms.numbers.tolist(), system=system, backend=job["backend"]
        )
    else:
        raise NotImplementedError("MACE in OpenMM needs a MACE model file; not measured")  # see README
    system.addForce(force)
    integ = openmm.VerletIntegrator(0.5 * unit.femtoseconds)
    ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName("CPU"))
    ctx.setPositions(atoms.positions * 0.1)
    ctx.setVelocitiesToTemperature(300)
    integ.step(2)
    t0 = time.perf_counter()
    integ.step(reps)
    return (time.perf_counter() - t0) / reps


def _lammps_step(job: dict, atoms, reps: int) -> float:
    import tempfile

    from transip_md.testing.lammps import preload_and_import_lammps, write_data

    lammps = preload_and_import_lammps()
    from transip_md.lammps.plugin import load_plugin

    if not atoms.pbc.any():
        atoms = atoms.copy()
        atoms.cell = [40.0] * 3
        atoms.pbc = True
        atoms.center()
    with tempfile.TemporaryDirectory() as tmp:
        data = write_data(Path(tmp) / "box.data", atoms)
        lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
        load_plugin(lmp)
        for line in (
            "units metal",
            "atom_style atomic",
            "atom_modify map array",
            f"read_data {data}",
            f"pair_style transip {job['transip']}",
            "pair_coeff * * H C N O",
            "velocity all create 300 1",
            "fix nve all nve",
            "timestep 0.0005",
            "run 2",
        ):
            lmp.command(line)
        t0 = time.perf_counter()
        lmp.command(f"run {reps} pre no post no")  # no setup force call inside the timing
        seconds = (time.perf_counter() - t0) / reps
        lmp.close()
    return seconds


def machine_peak_gflops(threads: int) -> float:
    """Measured float32 GEMM rate (GFLOP/s) with the same thread count: the attainable peak here."""
    import torch

    torch.set_num_threads(threads)
    a = torch.randn(2048, 2048)
    b = torch.randn(2048, 2048)
    a @ b
    t0 = time.perf_counter()
    for _ in range(5):
        a @ b
    return 5 * 2 * 2048**3 / (time.perf_counter() - t0) / 1e9


# ---------------------------------------------------------------------------------------- driver
def run_job(job: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="21,100,1000,5000")
    ap.add_argument("--engines", default="raw,ase,openmm,lammps")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    ap.add_argument("--model", help="TransIP model file (default: the shipped model)")
    ap.add_argument("--backend", default="python", help="OpenMM TransIPForce backend")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--report", action="store_true", help="only rewrite results/peers.md from results/peers.json")
    args = ap.parse_args()
    if args.report:
        saved = json.loads((RESULTS / "peers.json").read_text())
        rows, peak = saved.pop("rows"), saved.pop("peak_gflops")
        write_report(rows, peak, saved)
        return
    if args.worker:
        print(json.dumps(work(json.loads(args.worker))))
        return
    from transip_md.model import load_compiled

    transip = transip_model_path(args.model)
    meta = load_compiled(transip).metadata
    base = {
        "threads": args.threads,
        "repeats": args.repeats,
        "transip": transip,
        "cutoff": meta["cutoff"],
        "dtype": meta["dtype"],
        "backend": args.backend,
    }
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        for engine in args.engines.split(","):
            order = ("transip", "mace") if len(rows) % 2 == 0 else ("mace", "transip")
            res = {}
            for model in order:
                if model == "mace" and engine in ("openmm", "lammps"):
                    res[model] = {"error": "not measured (see bench/README.md)"}
                    continue
                res[model] = run_job({**base, "size": size, "engine": engine, "model": model})
            rows.append({"size": size, "engine": engine, **res})
            print(json.dumps(rows[-1]), flush=True)
    peak = machine_peak_gflops(args.threads)
    write_report(rows, peak, base)


def write_report(rows: list[dict], peak: float, base: dict) -> None:
    lines = [
        f"# TransIP vs MACE-small ({base['threads']} threads, {base['dtype']}, cutoff {base['cutoff']} Å)",
        "",
        f"Command: `python bench/peers.py` (repeats {base['repeats']}); measured GEMM peak {peak:.1f} GFLOP/s.",
        "",
        "raw: energy + forces of the model alone; ase: Calculator call; openmm / lammps: one MD step (steps/s "
        "for raw and ase = force calls per second). FLOPs: torch's matmul/attention formulas (element-wise "
        "work not counted); % of peak against the measured one-thread float32 GEMM peak.",
        "",
        "| atoms | engine | TransIP ms/call | MACE ms/call | TransIP steps/s | MACE steps/s | TransIP/MACE time "
        "| TransIP peak RSS MB | MACE peak RSS MB | TransIP MFLOP/atom | MACE MFLOP/atom | TransIP % of peak |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t, m = r.get("transip", {}), r.get("mace", {})
        n = t.get("atoms") or m.get("atoms") or r["size"]

        def ms(x):
            return f"{1000 * x['seconds']:.1f}" if "seconds" in x else x.get("error", "-")[:40]

        def rate(x):
            return f"{1 / x['seconds']:.2f}" if "seconds" in x else "-"

        ratio = f"{t['seconds'] / m['seconds']:.2f}" if "seconds" in t and "seconds" in m else "-"
        mem_t = f"{t['peak_rss_mb']:.0f}" if "peak_rss_mb" in t else "-"
        mem_m = f"{m['peak_rss_mb']:.0f}" if "peak_rss_mb" in m else "-"
        fl_t = f"{t['flops'] / n / 1e6:.2f}" if "flops" in t else "-"
        fl_m = f"{m['flops'] / n / 1e6:.2f}" if "flops" in m else "-"
        frac = f"{100 * t['flops'] / t['seconds'] / 1e9 / peak:.1f}" if "flops" in t and "seconds" in t else "-"
        lines.append(
            f"| {n} | {r['engine']} | {ms(t)} | {ms(m)} | {rate(t)} | {rate(m)} | {ratio} | {mem_t} | {mem_m} "
            f"| {fl_t} | {fl_m} | {frac} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "peers.md").write_text(text)
    (RESULTS / "peers.json").write_text(json.dumps({"peak_gflops": peak, "rows": rows, **base}, indent=1))


if __name__ == "__main__":
    main()
