"""Does torch.compile pay? The TorchScript model file against the same weights through torch.compile.

    python bench/torch_compile.py                 # 21-atom molecule, ~100- and ~1000-atom water boxes
    python bench/torch_compile.py --sizes 21,100 --threads 2

Both paths compute energy + forces (autograd) through ``predict`` with the same chunking; only the
Transformer differs (TorchScript interpreter vs ``torch.compile``, static shapes; see
transip_md/model/accelerate.py). The two alternate within one run after warm-up. The first call of the
compiled path includes compilation (with an empty inductor cache unless TORCHINDUCTOR_CACHE_DIR is set) and
is reported separately. Results: bench/results/torch_compile.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# A cold compile is what a user sees first: give inductor an empty cache unless one is set explicitly.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="transip_inductor_"))

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers import structure, transip_model_path  # noqa: E402

from transip_md.model import load_compiled, predict  # noqa: E402
from transip_md.model.accelerate import torch_compiled  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="21,100,1000")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None, help="model file (default: the shipped model)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = transip_model_path(args.model)
    script = load_compiled(path)
    fast = torch_compiled(script)
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        atoms = structure(size)

        def call(model, atoms=atoms):
            return predict(model, atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc)

        t0 = time.perf_counter()
        first = call(fast)
        compile_s = time.perf_counter() - t0
        for _ in range(3):
            ref = call(script)
            call(fast)
        times = {"torchscript": [], "torch.compile": []}
        for _ in range(args.repeats):
            for name, model in (("torchscript", script), ("torch.compile", fast)):
                t = time.perf_counter()
                call(model)
                times[name].append(time.perf_counter() - t)
        row = {
            "atoms": len(atoms),
            "torchscript_s": min(times["torchscript"]),
            "compile_s": min(times["torch.compile"]),
            "first_call_s": compile_s,
            "max_force_diff": float(np.abs(first.forces - ref.forces).max()),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    lines = [
        f"# TorchScript file vs torch.compile ({args.threads} thread(s), model {Path(path).name})",
        "",
        "Command: `python bench/torch_compile.py`; best of "
        f"{args.repeats} alternating calls after warm-up; energy + forces per call.",
        "",
        "| atoms | TorchScript ms/call | torch.compile ms/call | compile/TorchScript | first compiled call s "
        "| max force difference eV/Å |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['atoms']} | {1000 * r['torchscript_s']:.1f} | {1000 * r['compile_s']:.1f} "
            f"| {r['compile_s'] / r['torchscript_s']:.2f} | {r['first_call_s']:.0f} | {r['max_force_diff']:.1e} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "torch_compile.md").write_text(text)


if __name__ == "__main__":
    main()
