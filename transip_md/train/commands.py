"""``transip-md train | label | evaluate`` (the training layer's commands)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    _register_label(sub)
    _register_train(sub)
    _register_evaluate(sub)
    _register_checkpoint_export(sub)


# ---------------------------------------------------------------------------------------------- label
def _register_label(sub: argparse._SubParsersAction) -> None:
    from .label import PLANS, LabelConfig

    d = LabelConfig()
    p = sub.add_parser(
        "label",
        help="build labelled data: rdkit molecules -> cheap classical/distorted geometries -> GFN2-xTB -> compact .npz",
    )
    p.add_argument("output", help="compact .npz to write (the legacy --sampler xtb-md writes .extxyz[.gz])")
    p.add_argument("--sampler", choices=["compact", "xtb-md"], default="compact", help="xtb-md: the first labeller")
    p.add_argument("--smiles", nargs="+", help="SMILES files .smi/.csv (default: rdkit's NCI first_5K + wehi_mols)")
    p.add_argument("--n-molecules", type=int, default=d.n_molecules, help="molecules to select (seeded)")
    p.add_argument("--limit", type=int, help="label only the first LIMIT selected molecules (quick runs)")
    p.add_argument("--parts-dir", help="folder of the resumable per-molecule parts (default: OUTPUT.parts)")
    p.add_argument("--per-element", type=int, default=d.per_element, help="molecules per element at least")
    p.add_argument(
        "--bond-supplement",
        action="store_true",
        help="label N-MOLECULES derived molecules with rare heteroatom-halogen bonds (P-Cl, S-Cl, ...; docs/data.md)",
    )
    p.add_argument(
        "--exclude-heldout-of",
        nargs="+",
        help="compact data file(s) whose held-out molecules may not be scaffolds of the bond supplement, nor be "
        "chosen by --motif",
    )
    p.add_argument(
        "--motif",
        choices=["hbond"],
        help="label N-MOLECULES pool molecules that hold this motif (hbond: an intramolecular N/O-H...N/O ring; "
        "docs/data.md) instead of the element-balanced selection",
    )
    p.add_argument("--n-conformers", type=int, default=d.n_conformers, help="MMFF94/UFF conformers per molecule")
    p.add_argument(
        "--hbond-push", default="1.0,1.7", help="gfn2-hbond: LO,HI H...acceptor distances (Å) of the pushed frames"
    )
    p.add_argument(
        "--hbond-squeeze", default="2.2,2.5", help="gfn2-hbond: LO,HI donor...acceptor distances (Å) squeezed to"
    )
    p.add_argument(
        "--exclude-molecules-of",
        help="compact data file none of whose molecules (held-out or not) the selection may choose: new molecules "
        "for a line that already trains on it (not with --bond-supplement)",
    )
    p.add_argument(
        "--graft-groups",
        help="with --bond-supplement: the groups to graft, SMILES with one [*] each, comma-separated, or 'soft' "
        "(molecules.SOFT_BOND_GRAFTS; default: molecules.BOND_GRAFTS)",
    )
    p.add_argument(
        "--target-bonds",
        help="extra stretched geometries of these bonds: two-atom SMARTS, comma-separated, or 'soft' "
        "(molecules.SOFT_BONDS: the bonds of the soft graft groups); docs/data.md",
    )
    p.add_argument(
        "--target-stretch",
        default=",".join(str(x) for x in d.target_stretch),
        help="LO,HI: the stretch range of --target-bonds, x bond length",
    )
    p.add_argument("--target-frames", type=int, default=d.target_frames, help="stretched geometries per molecule")
    p.add_argument(
        "--plan",
        choices=list(PLANS),
        default=d.plan,
        help="per-molecule frames: classical (MMFF94/UFF geometries and distortions) or gfn2-dynamics (the GFN2-xTB "
        "minimum in every state and GFN2-xTB Langevin frames; docs/data.md)",
    )
    p.add_argument("--gfn2-md-steps", type=int, default=d.gfn2_md_steps, help="gfn2-dynamics: Langevin steps")
    p.add_argument("--gfn2-md-every", type=int, default=d.gfn2_md_every, help="gfn2-dynamics: a frame every n steps")
    p.add_argument("--gfn2-md-timestep", type=float, default=d.gfn2_md_timestep, help="gfn2-dynamics: fs")
    p.add_argument("--gfn2-t-min", type=float, default=d.gfn2_t_min, help="gfn2-dynamics: K")
    p.add_argument("--gfn2-t-max", type=float, default=d.gfn2_t_max, help="gfn2-dynamics: K")
    p.add_argument("--heldout-fraction", type=float, default=d.heldout_fraction)
    p.add_argument("--elements", default=",".join(d.elements), help="allowed elements, comma-separated")
    p.add_argument("--min-atoms", type=int, default=d.min_atoms)
    p.add_argument("--max-atoms", type=int, default=d.max_atoms)
    p.add_argument("--states", default="0:1,1:2,-1:2,0:3", help="charge:multiplicity; the first is the ground state")
    p.add_argument("--t-min", type=float, default=d.t_min, help="K")
    p.add_argument("--t-max", type=float, default=d.t_max, help="K")
    p.add_argument("--md-steps", type=int, default=d.md_steps, help="classical Langevin steps (0.5 fs) per geometry")
    p.add_argument("--relax-steps", type=int, default=d.relax_steps, help="GFN2 steps on a charged/open-shell surface")
    p.add_argument("--max-force", type=float, default=d.max_force, help="eV/Å cap (thermal, stretched, relax)")
    p.add_argument("--max-force-compressed", type=float, default=d.max_force_compressed, help="eV/Å cap (compressed)")
    p.add_argument("--calculator", default="tblite", help="'tblite' (GFN2-xTB) or an ASE calculator module:Class")
    p.add_argument("--calculator-kwargs", default="{}", help="JSON keyword arguments for --calculator")
    p.add_argument("--workers", type=int, default=1, help="processes (one thread each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=150, help="xtb-md: MD steps per state")
    p.add_argument("--sample-every", type=int, default=30, help="xtb-md: keep every n-th MD step")
    p.add_argument("--temperatures", default="300,500,800", help="xtb-md: K, one drawn per molecule and state")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_label)


def _states(text: str) -> tuple[tuple[int, int], ...]:
    out = []
    for item in text.split(","):
        q, m = item.split(":")
        out.append((int(q), int(m)))
    return tuple(out)


def _graft_groups(text: str | None, bond_supplement: bool) -> tuple[str, ...] | None:
    """--graft-groups as a tuple of group SMILES ('soft': molecules.SOFT_BOND_GRAFTS); checked with rdkit."""
    if text is None:
        return None
    if not bond_supplement:
        raise SystemExit("--graft-groups needs --bond-supplement")
    from .molecules import SOFT_BOND_GRAFTS

    groups = SOFT_BOND_GRAFTS if text.strip() == "soft" else tuple(g.strip() for g in text.split(",") if g.strip())
    from rdkit import Chem

    for g in groups:
        mol = Chem.MolFromSmiles(g)
        if mol is None or sum(a.GetAtomicNum() == 0 for a in mol.GetAtoms()) != 1:
            raise SystemExit(f"--graft-groups: {g!r} is not a SMILES with exactly one [*] attachment point")
    return groups


def _target_bonds(text: str | None) -> tuple[str, ...] | None:
    """--target-bonds as a tuple of two-atom SMARTS ('soft': molecules.SOFT_BONDS); checked with rdkit."""
    if text is None:
        return None
    from .molecules import SOFT_BONDS
    from .sampling import bond_query

    bonds = SOFT_BONDS if text.strip() == "soft" else tuple(b.strip() for b in text.split(",") if b.strip())
    for b in bonds:
        try:
            bond_query(b)
        except ValueError as exc:
            raise SystemExit(f"--target-bonds: {exc}") from None
    return bonds


def _range(flag: str, text: str, unit: str) -> tuple[float, float]:
    """A LO,HI option value, 0 < LO < HI, in ``unit`` (e.g. 'x bond length', 'Å'), named by ``flag`` when wrong."""
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise SystemExit(f"{flag}: {text!r} is not LO,HI (two numbers, {unit})") from None
    if not 0 < lo < hi:
        raise SystemExit(f"{flag}: need 0 < LO < HI ({unit}), got {lo}, {hi}")
    return lo, hi


def _run_label(args: argparse.Namespace) -> int:
    if args.sampler == "xtb-md":
        return _run_label_xtbmd(args)
    from .label import LabelConfigError, run_labelling

    if args.target_frames < 1:
        raise SystemExit(f"--target-frames must be at least 1, got {args.target_frames}")
    if args.gfn2_md_every < 1 or args.gfn2_md_steps < 0 or args.gfn2_md_timestep <= 0:
        raise SystemExit("need --gfn2-md-every >= 1, --gfn2-md-steps >= 0 and --gfn2-md-timestep > 0 fs")
    if not 0 < args.gfn2_t_min <= args.gfn2_t_max:
        raise SystemExit(f"need 0 K < --gfn2-t-min <= --gfn2-t-max, got {args.gfn2_t_min}, {args.gfn2_t_max}")
    try:
        cfg = _label_config(args)
    except LabelConfigError as exc:
        raise SystemExit(str(exc)) from None
    summary = run_labelling(
        args.output,
        cfg,
        sources=args.smiles,
        workers=args.workers,
        progress=not args.no_progress,
        limit=args.limit,
        parts_dir=args.parts_dir,
    )
    print(json.dumps(summary, indent=1))
    return 0


def _label_config(args: argparse.Namespace):
    """The LabelConfig of ``transip-md label``'s arguments (LabelConfigError for options that do not go together)."""
    from .label import LabelConfig

    return LabelConfig(
        elements=tuple(s.strip() for s in args.elements.split(",") if s.strip()),
        min_atoms=args.min_atoms,
        max_atoms=args.max_atoms,
        n_molecules=args.n_molecules,
        per_element=args.per_element,
        heldout_fraction=args.heldout_fraction,
        states=_states(args.states),
        t_min=args.t_min,
        t_max=args.t_max,
        md_steps=args.md_steps,
        relax_steps=args.relax_steps,
        max_force=args.max_force,
        max_force_compressed=args.max_force_compressed,
        seed=args.seed,
        bond_supplement=args.bond_supplement,
        # one path stays a string, as in the manifests of the sets labelled before several were allowed
        exclude_heldout_of=(
            args.exclude_heldout_of[0]
            if args.exclude_heldout_of and len(args.exclude_heldout_of) == 1
            else tuple(args.exclude_heldout_of or ()) or None
        ),
        motif=args.motif,
        n_conformers=args.n_conformers,
        hbond_push=_range("--hbond-push", args.hbond_push, "Å"),
        hbond_squeeze=_range("--hbond-squeeze", args.hbond_squeeze, "Å"),
        exclude_molecules_of=args.exclude_molecules_of,
        graft_groups=_graft_groups(args.graft_groups, args.bond_supplement),
        target_bonds=_target_bonds(args.target_bonds),
        target_stretch=_range("--target-stretch", args.target_stretch, "x bond length"),
        target_frames=args.target_frames,
        plan=args.plan,
        gfn2_md_steps=args.gfn2_md_steps,
        gfn2_md_every=args.gfn2_md_every,
        gfn2_md_timestep=args.gfn2_md_timestep,
        gfn2_t_min=args.gfn2_t_min,
        gfn2_t_max=args.gfn2_t_max,
        calculator=args.calculator,
        calculator_kwargs=json.loads(args.calculator_kwargs),
    )


def _run_label_xtbmd(args: argparse.Namespace) -> int:
    from .label_xtbmd import LabelConfig, run_labelling

    cfg = LabelConfig(
        elements=tuple(s.strip() for s in args.elements.split(",") if s.strip()),
        min_atoms=args.min_atoms,
        max_atoms=args.max_atoms,
        states=_states(args.states),
        temperatures=tuple(float(t) for t in args.temperatures.split(",")),
        n_steps=args.steps,
        sample_every=args.sample_every,
        max_force=args.max_force,
        seed=args.seed,
        calculator=args.calculator,
        calculator_kwargs=json.loads(args.calculator_kwargs),
    )
    smiles = args.smiles[0] if args.smiles else None
    summary = run_labelling(
        smiles, args.output, cfg, n_molecules=args.limit, workers=args.workers, progress=not args.no_progress
    )
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=1))
    return 0


# ---------------------------------------------------------------------------------------------- train
#: CLI flag (argparse dest) -> TrainConfig key. Flags left at None change nothing: the defaults, a --config file
#: or, with --resume, the run's config.json decide.
_TRAIN_FLAGS = {
    "data": "data",
    "val_data": "val_data",
    "train_only_data": "train_only_data",
    "val_fraction": "val_fraction",
    "output": "output",
    "equivariance": "equivariance",
    "epochs": "epochs",
    "max_steps": "max_steps",
    "time_budget": "time_budget_s",
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
    "force_loss": "force_loss",
    "force_loss_beta": "force_loss_beta",
    "align_weight": "align_weight",
    "vertical_weight": "vertical_weight",
    "direct_forces": "direct_forces",
    "align": "align",
    "align_loss": "align_loss",
    "align_temperature": "align_temperature",
    "dtype": "dtype",
    "seed": "seed",
    "threads": "threads",
    "device": "device",
    "resume": "resume",
    "init_from": "init_from",
    "cutoff": "model.cutoff",
    "d_model": "model.d_model",
    "layers": "model.n_layers",
    "heads": "model.n_heads",
}


def _with_default(defaults: dict, key: str, text: str) -> str:
    """``text`` plus the TrainConfig default of ``key`` (the flags themselves default to None: not given)."""
    value = defaults
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return f"{text} (default: {value})"


def _register_train(sub: argparse._SubParsersAction) -> None:
    from .config import MODEL_RULE, TrainConfig

    d = TrainConfig().to_dict()
    p = sub.add_parser(
        "train",
        help="train a TransIP model (writes checkpoints, log.csv, plots and model.pt)",
        description="Train a TransIP model. Defaults are TrainConfig's; a --config file replaces them, and "
        "flags override both. `--resume RUN` alone continues RUN with its config.json; with it, only "
        "--epochs, --max-steps, --time-budget, --lr, --warmup-steps (and output/progress/threads/device switches) "
        "may change. "
        f"Model rule: {MODEL_RULE}.",
    )
    p.add_argument("--config", help="YAML or TOML file with TrainConfig keys; flags below override it")
    _add_data_flags(p, d)
    _add_optimisation_flags(p, d)
    _add_model_flags(p, d, MODEL_RULE)
    p.add_argument("--resume", help="run folder (or its last.pt) to continue exactly, with its config.json")
    p.add_argument(
        "--init-from",
        help="fine-tune: start from this checkpoint's EMA weights (same model config; fresh optimizer, schedule, "
        "counters; the checkpoint's fitted energy baseline is kept)",
    )
    p.add_argument(
        "--init-grow",
        action="store_true",
        help="with --init-from: the model may have more blocks (--layers) than the checkpoint; the extra blocks are "
        "appended as identity maps, so training starts at the checkpoint's energies",
    )
    p.add_argument(
        "--init-covalent",
        action="store_true",
        help="with --init-from: a plain-radial checkpoint starts a model with model.covalent_scaled_radial=true "
        "(weights copied, radial splines extended; exact for C-C pairs only, or for every pair with "
        "model.learned_radii=true)",
    )
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable files / bad frames and count them")
    p.add_argument("--deterministic", action="store_true", help="torch.use_deterministic_algorithms(True)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar and no per-epoch lines")
    p.add_argument("--no-plots", action="store_true", help="no learning-curve and parity PNGs")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config key, e.g. model.n_rbf=8")
    p.set_defaults(func=_run_train)


def _add_data_flags(p: argparse.ArgumentParser, d: dict) -> None:
    p.add_argument(
        "--data",
        nargs="+",
        help="extxyz / .db / .aselmdb / .npz files or folders (default: the shipped set and the bond supplement)",
    )
    p.add_argument("--val-data", nargs="+", help="separate validation data (default: split --data by molecule)")
    p.add_argument(
        "--train-only-data",
        nargs="+",
        help="more training files whose molecules never go to validation (the split of --data stays as it was)",
    )
    p.add_argument("--val-fraction", type=float, help=_with_default(d, "val_fraction", "held-out molecule fraction"))
    p.add_argument("--output", "-o", help=_with_default(d, "output", "run folder"))
    p.add_argument("--max-frames", type=int, help="use at most this many training frames (default: all)")
    p.add_argument(
        "--max-val-frames", type=int, help="validation frames, independent of --max-frames (0: all held-out frames)"
    )


def _add_optimisation_flags(p: argparse.ArgumentParser, d: dict) -> None:
    from .config import FORCE_LOSSES

    p.add_argument(
        "--equivariance",
        choices=["learned", "augment", "none"],
        help=_with_default(d, "equivariance", "learned (TransIP), augment (random rotations) or none"),
    )
    p.add_argument("--epochs", type=int, help=_with_default(d, "epochs", "epochs (>= 1)"))
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (default: no limit)")
    p.add_argument(
        "--time-budget",
        type=float,
        metavar="SECONDS",
        help="stop training after this many wall-clock seconds (validate, checkpoint, export); the LR schedule "
        "decays by max(step, time) progress (default: no limit)",
    )
    p.add_argument("--max-atoms", type=int, help=_with_default(d, "max_atoms", "atoms per (global) batch"))
    p.add_argument("--lr", type=float, help=_with_default(d, "lr", "peak learning rate (AdamW)"))
    p.add_argument("--warmup-steps", type=int, help=_with_default(d, "warmup_steps", "linear warm-up steps"))
    p.add_argument("--weight-decay", type=float, help=_with_default(d, "weight_decay", "AdamW weight decay"))
    p.add_argument("--grad-clip", type=float, help=_with_default(d, "grad_clip", "gradient norm clip (0: off)"))
    p.add_argument("--ema-decay", type=float, help=_with_default(d, "ema_decay", "EMA decay of the weights"))
    p.add_argument("--energy-weight", type=float, help=_with_default(d, "energy_weight", "on (eV/atom)^2"))
    p.add_argument("--force-weight", type=float, help=_with_default(d, "force_weight", "on the force term"))
    p.add_argument(
        "--force-loss",
        choices=list(FORCE_LOSSES),
        help=_with_default(d, "force_loss", "force term: squared error (eV/Å)^2 or smooth L1 (eV/Å)"),
    )
    p.add_argument(
        "--force-loss-beta",
        type=float,
        help=_with_default(d, "force_loss_beta", "eV/Å where smooth_l1 turns from quadratic to absolute"),
    )
    p.add_argument("--align-weight", type=float, help=_with_default(d, "align_weight", "learned-equivariance loss"))
    p.add_argument(
        "--vertical-weight",
        type=float,
        help=_with_default(
            d, "vertical_weight", "loss on energy differences between charge/spin states of one geometry (eV^2)"
        ),
    )
    p.add_argument(
        "--direct-forces",
        type=float,
        metavar="SHARE",
        help=_with_default(
            d,
            "direct_forces",
            "share of the run (0-1, by the lr schedule's progress) trained on direct forces, then -dE/dx "
            "(eSEN's direct-force pretraining; local models; the model file stays conservative)",
        ),
    )
    p.add_argument(
        "--align",
        choices=["pooled", "atoms"],
        help=_with_default(d, "align", "learned mode: per-atom features or pooled molecular embedding (the paper's)"),
    )
    p.add_argument(
        "--align-loss",
        choices=["mse", "infonce"],
        help=_with_default(d, "align_loss", "alignment loss (infonce: contrastive over the batch; pooled only)"),
    )
    p.add_argument("--align-temperature", type=float, help=_with_default(d, "align_temperature", "infonce temperature"))
    p.add_argument("--align-stop-gradient", action="store_true", help="detach the target view of the alignment")
    p.add_argument("--dtype", choices=["float32", "float64"], help=_with_default(d, "dtype", "model precision"))
    p.add_argument("--seed", type=int, help=_with_default(d, "seed", "initial weights, batch order, rotations"))
    p.add_argument("--threads", type=int, help=_with_default(d, "threads", "torch threads per process (0: torch's)"))
    p.add_argument(
        "--device",
        help=_with_default(d, "device", "cpu, cuda (under torchrun: each process's LOCAL_RANK GPU) or cuda:N"),
    )


def _add_model_flags(p: argparse.ArgumentParser, d: dict, rule: str) -> None:
    p.add_argument("--cutoff", type=float, help=_with_default(d, "model.cutoff", "Å (local model); see --global"))
    p.add_argument("--global", dest="global_mode", action="store_true", help="global all-pairs model (no cutoff)")
    p.add_argument("--d-model", type=int, help=_with_default(d, "model.d_model", f"token width; {rule}"))
    p.add_argument("--layers", type=int, help=_with_default(d, "model.n_layers", "Transformer blocks"))
    p.add_argument("--heads", type=int, help=_with_default(d, "model.n_heads", "attention heads (see --d-model)"))


def _cli_overrides(args: argparse.Namespace) -> tuple[dict, dict]:
    """(TrainConfig key -> value, key -> the flag as typed) of every flag given on the command line."""
    from .config import ConfigError, parse_value

    overrides: dict = {}
    names: dict = {}

    def put(key, value, name):
        overrides[key] = value
        names[key] = name

    for flag, key in _TRAIN_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            put(key, value, "--" + flag.replace("_", "-"))
    if args.global_mode:
        put("model.cutoff", None, "--global")
    for flag in ("skip_bad", "deterministic", "align_stop_gradient", "init_grow", "init_covalent"):
        if getattr(args, flag, False):
            put(flag, True, "--" + flag.replace("_", "-"))
    if args.no_progress:
        put("progress", False, "--no-progress")
    if args.no_plots:
        put("plots", False, "--no-plots")
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        put(key.strip(), parse_value(value), f"--set {key.strip()}")
    return overrides, names


def build_train_config(args: argparse.Namespace):
    """The TrainConfig of ``transip-md train``: defaults < --config file < flags; or, with --resume, the run's
    config.json < flags that may change in a resumed run (others must equal the stored values)."""
    from .config import TrainConfig, apply_overrides, merge_resume, read_config_file, resume_config, run_folder

    overrides: dict = {}
    names: dict = {}
    if args.config:
        file_values = _flatten(read_config_file(args.config))
        overrides.update(file_values)
        names.update({k: f"{args.config}: {k}" for k in file_values})
    flag_values, flag_names = _cli_overrides(args)
    overrides.update(flag_values)
    names.update(flag_names)
    if args.resume:
        overrides.setdefault("output", str(run_folder(args.resume)))  # where the run is, not where it was made
        data = merge_resume(resume_config(args.resume), overrides, names)
    else:
        data = apply_overrides(TrainConfig().to_dict(), overrides)
    if not data.get("data"):
        from ..data import default_training_paths

        data["data"] = [str(path) for path in default_training_paths()]
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
    from .data import DataError
    from .trainer import train

    cfg = build_train_config(args)
    try:
        result = train(cfg)
    except DataError as exc:  # a bad file or frame: cli.py prints this one line (exit code 2)
        raise DataError(f"{exc} (--skip-bad skips bad frames and unreadable files)") from exc
    if "model" in result:
        last = result["history"][-1] if result["history"] else {}
        summary = {"model": result["model"], "output": result["output"], "best_epoch": result.get("best_epoch")}
        print(json.dumps({**summary, "last_epoch": last}, indent=1))
    return 0


# ---------------------------------------------------------------------------------------------- evaluate
def _register_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="errors of a model file on labelled data (MAE/RMSE, symmetry, per state)")
    p.add_argument("model", help="compiled model file (.pt)")
    p.add_argument(
        "data", nargs="*", help="extxyz / .db / .aselmdb / compact .npz files or folders (default: the shipped set)"
    )
    p.add_argument("--heldout", action="store_true", help="only the data set's held-out molecules (its own split flag)")
    p.add_argument(
        "--vertical",
        action="store_true",
        help="also vertical ionisation energy, electron affinity and singlet-triplet gap (geometries labelled in "
        "all four states)",
    )
    p.add_argument(
        "--validation",
        metavar="CONFIG",
        help="instead of data: the whole validation side of the training run this config (YAML/TOML, or the run's "
        "config.json) describes, split as the trainer splits it (for choosing between runs without the held-out set)",
    )
    p.add_argument(
        "--training",
        metavar="CONFIG",
        help="instead of the held-out side: the training side of the run this config (or the run's config.json) "
        "describes, split as the trainer splits it; with data, only the frames read from those files (beside the "
        "held-out errors, it tells under-fitting from a generalisation gap)",
    )
    p.add_argument(
        "--molecules", type=int, metavar="N", help="a random sample of N molecules of the chosen side (seed 0)"
    )
    p.add_argument("--max-atoms", type=int, default=512, help="atoms per evaluation batch")
    p.add_argument("--symmetry-structures", type=int, default=8, help="structures for the symmetry error")
    p.add_argument("--symmetry-rotations", type=int, default=8, help="random rotations per structure")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable files / bad frames and count them")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_model, format_table

    result = evaluate_model(
        args.model,
        args.data or None,
        max_atoms=args.max_atoms,
        symmetry_structures=args.symmetry_structures,
        symmetry_rotations=args.symmetry_rotations,
        skip_bad=args.skip_bad,
        heldout_only=args.heldout,
        vertical=args.vertical,
        validation_of=args.validation,
        training_of=args.training,
        molecules=args.molecules,
    )
    print(json.dumps(result, indent=1) if args.json else format_table(result))
    return 0


# ---------------------------------------------------------------------------------------------- export --checkpoint
def _register_checkpoint_export(sub: argparse._SubParsersAction) -> None:
    """``transip-md export --checkpoint CKPT OUTPUT``: the compiled model of a trainer checkpoint (EMA weights)."""
    from ..model.commands import add_export_source

    add_export_source(
        sub, "--checkpoint", _write_from_checkpoint, help="trainer checkpoint to export (weights-only load)"
    )


def _write_from_checkpoint(args: argparse.Namespace, output: str) -> str:
    from .checkpoint import export_checkpoint

    export_checkpoint(args.checkpoint, output)
    return f"wrote {output} from {args.checkpoint}"
