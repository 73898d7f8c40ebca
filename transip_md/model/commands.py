"""``transip-md export``: write a compiled model file (random weights for smoke tests, or recompiled).

Sources that live in higher layers add themselves with :func:`add_export_source` (the training layer
``--checkpoint``, the LAMMPS layer ``--lammps-mliap``), so this layer imports neither of them.
Exactly one source per call; a random-model option given with another source is an error.
``--symmetrize GROUP MODEL -o OUTPUT`` (this layer) reads the positional MODEL and writes -o OUTPUT.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

#: (args, output path) -> the line printed after writing.
ExportWriter = Callable[[argparse.Namespace, str], str]

#: Options of --random and their defaults (the flags default to None so that a stray one can be refused).
RANDOM_DEFAULTS = {
    "elements": "H,C,N,O",
    "d_model": 64,
    "layers": 2,
    "heads": 4,
    "dtype": "float32",
    "seed": 0,
    "attention": "math",
}
ARCHITECTURE_RULE = "d-model divisible by heads; head dimension d-model/heads >= 6 x rotary frequencies (2): >= 12"
#: Rotation groups of --symmetrize (transip_md.model.symmetrize.GROUP_ORDERS; not imported: it pulls in torch).
SYMMETRIZE_GROUPS = ("tetrahedral", "octahedral", "icosahedral")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a compiled model file (TorchScript + metadata)",
        description="Write a compiled model file from exactly one source: --random, --recompile, "
        "--symmetrize GROUP MODEL -o OUTPUT, or one added by another layer (--checkpoint, --lammps-mliap).",
    )
    p.add_argument("output", nargs="?", help="model file to write (.pt); with --symmetrize: the model file to read")
    p.add_argument("-o", dest="output_opt", metavar="OUTPUT", help="output file (same as the positional argument)")
    p.add_argument("--random", action="store_true", help="random weights (smoke tests and benchmarks only)")
    p.add_argument(
        "--recompile", metavar="MODEL", help="rewrite MODEL with this version's code (same weights and metadata)"
    )
    r = RANDOM_DEFAULTS
    p.add_argument("--elements", help=f"--random: comma-separated element symbols (default: {r['elements']})")
    p.add_argument("--cutoff", type=float, default=None, help="--random: Å; omit for a global all-pairs model")
    p.add_argument("--d-model", type=int, help=f"--random: token width (default: {r['d_model']}); {ARCHITECTURE_RULE}")
    p.add_argument("--layers", type=int, help=f"--random: Transformer blocks (default: {r['layers']})")
    p.add_argument("--heads", type=int, help=f"--random: attention heads (default: {r['heads']})")
    p.add_argument("--dtype", choices=["float32", "float64"], help=f"--random: precision (default: {r['dtype']})")
    p.add_argument("--seed", type=int, help=f"--random: seed of the weights (default: {r['seed']})")
    p.add_argument(
        "--attention", choices=["math", "sdpa"], help=f"--random: attention kernel baked in (default: {r['attention']})"
    )
    p.set_defaults(func=run, export_sources={"random": ("--random", _write_random)}, export_options={})
    p.get_default("export_sources")["recompile"] = ("--recompile", _write_recompiled)
    _register_symmetrize(p)


def _symmetrize_seed(text: str) -> int | str:
    """--symmetrize-seed: an integer, or 'none' (axis-aligned group)."""
    if text.strip().lower() == "none":
        return "none"
    try:
        return int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {text!r}") from exc


def _register_symmetrize(p: argparse.ArgumentParser) -> None:
    """``export --symmetrize GROUP [--symmetrize-seed N|none] MODEL -o OUTPUT``."""
    p.add_argument(
        "--symmetrize",
        choices=SYMMETRIZE_GROUPS,
        help="average the model file given as the positional argument over the rotations of GROUP "
        "(12, 24 or 60 model evaluations per call); write it to -o OUTPUT",
    )
    p.add_argument(
        "--symmetrize-seed",
        type=_symmetrize_seed,
        metavar="N|none",
        help="--symmetrize: seed of the fixed random rotation C turning the group off the axes; "
        "'none' keeps it axis-aligned (default: 0)",
    )
    p.get_default("export_sources")["symmetrize"] = ("--symmetrize", _write_symmetrized)
    p.get_default("export_options")["symmetrize_seed"] = "symmetrize"


def add_export_source(
    sub: argparse._SubParsersAction, flag: str, writer: ExportWriter, help: str, options: tuple[str, ...] = ()
) -> argparse.ArgumentParser:
    """Add ``flag MODEL`` as a source of ``transip-md export``; ``options``: flags that only it may use.

    Returns the export parser, for the caller to add those options.
    """
    if "export" not in sub.choices:
        raise RuntimeError("transip_md.model.commands.register must run before export sources are added")
    p = sub.choices["export"]
    action = p.add_argument(flag, metavar="FILE", help=help)
    p.get_default("export_sources")[action.dest] = (flag, writer)
    p.get_default("export_options").update({opt: action.dest for opt in options})
    return p


def _output(args: argparse.Namespace) -> str:
    if args.output and args.output_opt and args.output != args.output_opt:
        raise SystemExit(f"transip-md export: two different outputs: {args.output} and -o {args.output_opt}")
    output = args.output_opt or args.output
    if not output:
        raise SystemExit("transip-md export: give the output file (positional or -o)")
    return output


def _source(args: argparse.Namespace) -> tuple[str, str, ExportWriter]:
    """(dest, flag, writer) of the one source given; refuse none, several, or options of another source."""
    sources = args.export_sources
    chosen = [dest for dest in sources if getattr(args, dest, None)]
    flags = " or ".join(flag for flag, _ in sources.values())
    if not chosen:
        raise SystemExit(f"transip-md export: choose a source: {flags}")
    if len(chosen) > 1:
        given = " and ".join(sources[d][0] for d in chosen)
        raise SystemExit(f"transip-md export: {given} exclude each other: give one source")
    dest = chosen[0]
    owners = {**{k: "random" for k in (*RANDOM_DEFAULTS, "cutoff")}, **args.export_options}
    for option, owner in owners.items():
        if owner != dest and getattr(args, option, None) is not None:
            raise SystemExit(
                f"transip-md export: --{option.replace('_', '-')} applies to {sources[owner][0]} only, "
                f"not to {sources[dest][0]}"
            )
    return dest, sources[dest][0], sources[dest][1]


def run(args: argparse.Namespace) -> int:
    dest, _, writer = _source(args)
    output = _symmetrize_output(args) if dest == "symmetrize" else _output(args)
    print(writer(args, output))
    return 0


def _symmetrize_output(args: argparse.Namespace) -> str:
    """--symmetrize takes its input MODEL as the positional argument, so the output must come with -o."""
    if not args.output:
        raise SystemExit("transip-md export: --symmetrize GROUP MODEL -o OUTPUT: give the model file to symmetrise")
    if not args.output_opt:
        raise SystemExit(f"transip-md export: --symmetrize: give the output file with -o (input: {args.output})")
    if args.output_opt == args.output:
        raise SystemExit(f"transip-md export: --symmetrize: the output -o {args.output_opt} is the input model")
    return args.output_opt


def _write_symmetrized(args: argparse.Namespace, output: str) -> str:
    from .compiled import load_compiled
    from .symmetrize import export_symmetrized

    seed = args.symmetrize_seed
    seed = 0 if seed is None else (None if seed == "none" else int(seed))
    compiled = load_compiled(args.output)  # a ModelFileError is reported by the CLI as a user error
    try:
        export_symmetrized(compiled, output, args.symmetrize, seed)
    except ValueError as exc:  # an already symmetrised input
        raise SystemExit(f"transip-md export: {exc}") from exc
    return json.dumps({"wrote": output, "symmetrize": args.symmetrize, "seed": seed, "from": args.output})


def _write_recompiled(args: argparse.Namespace, output: str) -> str:
    from .compiled import recompile

    recompile(args.recompile, output)
    return f"wrote {output} (recompiled from {args.recompile})"


def _write_random(args: argparse.Namespace, output: str) -> str:
    from ase.data import atomic_numbers

    from .compiled import export, random_model
    from .config import TransIPConfig

    opt = {k: (RANDOM_DEFAULTS[k] if getattr(args, k) is None else getattr(args, k)) for k in RANDOM_DEFAULTS}
    try:
        elements = [atomic_numbers[s.strip()] for s in opt["elements"].split(",") if s.strip()]
    except KeyError as exc:
        raise SystemExit(f"transip-md export: unknown element symbol {exc}") from exc
    try:
        config = TransIPConfig(
            elements=elements,
            d_model=opt["d_model"],
            n_layers=opt["layers"],
            n_heads=opt["heads"],
            cutoff=args.cutoff,
            dtype=opt["dtype"],
        )
    except ValueError as exc:
        raise SystemExit(f"transip-md export: {exc} (rule: {ARCHITECTURE_RULE})") from exc
    model = random_model(config, seed=opt["seed"])
    model.set_attention_kernel(opt["attention"])
    export(model, output, {"note": "random weights: for smoke tests and benchmarks only", "seed": opt["seed"]})
    return json.dumps({"wrote": output, "cutoff": args.cutoff, "elements": opt["elements"], "random": True})
