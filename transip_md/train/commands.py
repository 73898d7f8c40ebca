"""``transip-md train | label | evaluate`` (the training layer's commands)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    _register_label(sub)
    for name in ("_register_train", "_register_evaluate"):
        fn = globals().get(name)
        if fn is not None:
            fn(sub)


# ---------------------------------------------------------------------------------------------- label
def _register_label(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("label", help="generate labelled data: SMILES -> conformer -> short xTB MD -> extxyz")
    p.add_argument("output", help="extxyz file to write (.extxyz or .extxyz.gz)")
    p.add_argument("--smiles", help="SMILES file (default: rdkit's Data/NCI/first_5K.smi)")
    p.add_argument("--n-molecules", type=int, default=None, help="take this many molecules (seeded choice)")
    p.add_argument("--elements", default="H,C,N,O", help="allowed elements, comma-separated")
    p.add_argument("--min-atoms", type=int, default=8)
    p.add_argument("--max-atoms", type=int, default=30)
    p.add_argument(
        "--states", default="0:1,1:2,-1:2,0:3", help="charge:multiplicity states (impossible parity is skipped)"
    )
    p.add_argument("--temperatures", default="300,500,800", help="K, one drawn per molecule and state")
    p.add_argument("--steps", type=int, default=150, help="MD steps per state")
    p.add_argument("--sample-every", type=int, default=30, help="keep every n-th MD step")
    p.add_argument("--timestep", type=float, default=1.0, help="fs")
    p.add_argument("--max-force", type=float, default=15.0, help="eV/Å; frames with larger forces are dropped")
    p.add_argument("--min-distance", type=float, default=0.7, help="Å; frames with closer atoms are dropped")
    p.add_argument("--calculator", default="tblite", help="'tblite' (GFN2-xTB) or an ASE calculator module:Class")
    p.add_argument("--calculator-kwargs", default="{}", help="JSON keyword arguments for --calculator")
    p.add_argument("--workers", type=int, default=1, help="processes (one thread each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_label)


def _run_label(args: argparse.Namespace) -> int:
    from .label import LabelConfig, run_labelling

    states = []
    for item in args.states.split(","):
        q, m = item.split(":")
        states.append((int(q), int(m)))
    cfg = LabelConfig(
        elements=tuple(s.strip() for s in args.elements.split(",") if s.strip()),
        min_atoms=args.min_atoms,
        max_atoms=args.max_atoms,
        states=tuple(states),
        temperatures=tuple(float(t) for t in args.temperatures.split(",")),
        n_steps=args.steps,
        sample_every=args.sample_every,
        timestep_fs=args.timestep,
        max_force=args.max_force,
        min_distance=args.min_distance,
        seed=args.seed,
        calculator=args.calculator,
        calculator_kwargs=json.loads(args.calculator_kwargs),
    )
    summary = run_labelling(
        args.smiles, args.output, cfg, n_molecules=args.n_molecules, workers=args.workers, progress=not args.no_progress
    )
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=1))
    return 0


# ---------------------------------------------------------------------------------------------- train
#: CLI flag -> TrainConfig key (flags left at None do not override the config file).
_TRAIN_FLAGS = {
    "data": "data",
    "val_data": "val_data",
    "val_fraction": "val_fraction",
    "output": "output",
    "equivariance": "equivariance",
    "epochs": "epochs",
    "max_steps": "max_steps",
    "max_atoms": "max_atoms",
    "max_frames": "max_frames",
    "max_val_frames": "max_val_frames",
    "lr": "lr",
    "warmup_steps": "warmup_steps",
    "weight_decay": "weight_decay",
    "grad_clip": "grad_clip",
    "ema_decay": "ema_decay",
    "energy_weight": "energy_weight",
    "force_weight": "force_weight",
    "align_weight": "align_weight",
    "dtype": "dtype",
    "seed": "seed",
    "threads": "threads",
    "resume": "resume",
    "cutoff": "model.cutoff",
    "d_model": "model.d_model",
    "layers": "model.n_layers",
    "heads": "model.n_heads",
}


def _register_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a TransIP model (writes checkpoints, log.csv, plots and model.pt)")
    p.add_argument("--config", help="YAML or TOML file with TrainConfig keys; flags below override it")
    p.add_argument("--data", nargs="+", help="extxyz / .db / .aselmdb files or folders (default: shipped data)")
    p.add_argument("--val-data", nargs="+", help="separate validation data (default: split --data by molecule)")
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--output", "-o", help="run folder")
    p.add_argument("--equivariance", choices=["learned", "augment", "none"])
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--max-atoms", type=int, help="atoms per (global) batch")
    p.add_argument("--max-frames", type=int, help="use at most this many training frames")
    p.add_argument(
        "--max-val-frames", type=int, help="validation frames, independent of --max-frames (0: all held-out frames)"
    )
    p.add_argument("--lr", type=float)
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--grad-clip", type=float)
    p.add_argument("--ema-decay", type=float)
    p.add_argument("--energy-weight", type=float)
    p.add_argument("--force-weight", type=float)
    p.add_argument("--align-weight", type=float)
    p.add_argument("--dtype", choices=["float32", "float64"])
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="torch threads per process")
    p.add_argument("--cutoff", type=float, help="Å (local model); see --global for all-pairs")
    p.add_argument("--global", dest="global_mode", action="store_true", help="global all-pairs model (no cutoff)")
    p.add_argument("--d-model", type=int)
    p.add_argument("--layers", type=int)
    p.add_argument("--heads", type=int)
    p.add_argument("--resume", help="run folder or checkpoint to continue exactly")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable files / bad frames and count them")
    p.add_argument("--deterministic", action="store_true", help="torch.use_deterministic_algorithms(True)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config key, e.g. model.n_rbf=8")
    p.set_defaults(func=_run_train)


def build_train_config(args: argparse.Namespace):
    from .config import TrainConfig, apply_overrides, parse_value, read_config_file

    data = TrainConfig().to_dict()
    if args.config:
        data = apply_overrides(data, {k: v for k, v in _flatten(read_config_file(args.config)).items()})
    overrides = {}
    for flag, key in _TRAIN_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    if args.global_mode:
        overrides["model.cutoff"] = None
    for flag, key in (("skip_bad", "skip_bad"), ("deterministic", "deterministic")):
        if getattr(args, flag):
            overrides[key] = True
    if args.no_progress:
        overrides["progress"] = False
    if args.no_plots:
        overrides["plots"] = False
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"transip-md train: --set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = parse_value(value)
    data = apply_overrides(data, overrides)
    if not data.get("data"):
        from ..data import default_dataset_path

        data["data"] = [str(default_dataset_path())]
    return TrainConfig.from_dict(data)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k == "model":
            out.update(_flatten(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


def _run_train(args: argparse.Namespace) -> int:
    import sys

    from .data import DataError
    from .trainer import train

    cfg = build_train_config(args)
    try:
        result = train(cfg)
    except DataError as exc:  # a bad file or frame: name it, no traceback (--skip-bad skips and counts them)
        print(f"transip-md train: error: {exc} (--skip-bad skips bad frames and unreadable files)", file=sys.stderr)
        return 2
    if "model" in result:
        last = result["history"][-1] if result["history"] else {}
        print(json.dumps({"model": result["model"], "output": result["output"], "last_epoch": last}, indent=1))
    return 0


# ---------------------------------------------------------------------------------------------- evaluate
def _register_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="errors of a model file on labelled data (MAE/RMSE, symmetry, per state)")
    p.add_argument("model", help="compiled model file (.pt)")
    p.add_argument("data", nargs="+", help="extxyz / .db / .aselmdb files or folders")
    p.add_argument("--max-atoms", type=int, default=512, help="atoms per evaluation batch")
    p.add_argument("--symmetry-structures", type=int, default=8)
    p.add_argument("--symmetry-rotations", type=int, default=8)
    p.add_argument("--skip-bad", action="store_true")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_model, format_table

    result = evaluate_model(
        args.model,
        args.data,
        max_atoms=args.max_atoms,
        symmetry_structures=args.symmetry_structures,
        symmetry_rotations=args.symmetry_rotations,
        skip_bad=args.skip_bad,
    )
    print(json.dumps(result, indent=1) if args.json else format_table(result))
    return 0
