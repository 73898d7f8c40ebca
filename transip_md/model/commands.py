"""``transip-md export``: write a compiled model file (random weights for smoke tests, or from a checkpoint)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a compiled model file (TorchScript + metadata)")
    p.add_argument("output", nargs="?", help="model file to write (.pt)")
    p.add_argument("--random", action="store_true", help="random weights (smoke tests and benchmarks only)")
    p.add_argument("--checkpoint", help="trainer checkpoint to export (weights_only load)")
    p.add_argument("--elements", default="H,C,N,O", help="comma-separated element symbols (with --random)")
    p.add_argument("--cutoff", type=float, default=None, help="Å; omit for a global all-pairs model")
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--attention", choices=["math", "sdpa"], default="math", help="attention kernel baked into the file")
    p.add_argument(
        "--recompile", metavar="MODEL", help="rewrite MODEL with this version's code (same weights and metadata)"
    )
    p.add_argument("--lammps-mliap", metavar="MODEL", help="wrap MODEL for `pair_style mliap unified`")
    p.add_argument("-o", dest="output_opt", help="output file (same as the positional argument)")
    p.add_argument("--charge", type=int, default=0, help="total charge stored in an ML-IAP file (e)")
    p.add_argument("--spin", type=int, default=1, help="spin multiplicity stored in an ML-IAP file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ase.data import atomic_numbers

    from .compiled import export, random_model
    from .config import TransIPConfig

    output = args.output_opt or args.output
    if not output:
        raise SystemExit("transip-md export: give the output file")
    if args.lammps_mliap:
        from ..lammps.mliap import export_mliap

        export_mliap(args.lammps_mliap, output, charge=args.charge, multiplicity=args.spin)
        print(f"wrote {output} (ML-IAP unified; load with `pair_style mliap unified {output} 0`)")
        return 0
    if args.recompile:
        from .compiled import recompile

        recompile(args.recompile, output)
        print(f"wrote {output} (recompiled from {args.recompile})")
        return 0
    if args.checkpoint:
        from ..train.checkpoint import export_checkpoint

        export_checkpoint(args.checkpoint, output)
        print(f"wrote {output} from {args.checkpoint}")
        return 0
    if not args.random:
        raise SystemExit(
            "transip-md export: choose --random, --checkpoint CKPT, --recompile MODEL or --lammps-mliap MODEL"
        )
    try:
        elements = [atomic_numbers[s.strip()] for s in args.elements.split(",") if s.strip()]
    except KeyError as exc:
        raise SystemExit(f"transip-md export: unknown element symbol {exc}") from exc
    config = TransIPConfig(
        elements=elements,
        d_model=args.d_model,
        n_layers=args.layers,
        n_heads=args.heads,
        cutoff=args.cutoff,
        dtype=args.dtype,
    )
    model = random_model(config, seed=args.seed)
    model.set_attention_kernel(args.attention)
    export(model, output, {"note": "random weights: for smoke tests and benchmarks only", "seed": args.seed})
    print(json.dumps({"wrote": output, "cutoff": args.cutoff, "elements": args.elements, "random": True}))
    return 0
