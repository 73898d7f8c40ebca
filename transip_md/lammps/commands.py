"""LAMMPS commands: ``transip-md lammps-plugin-path`` (where the compiled pair_style transip plugin is) and the
``--lammps-mliap`` source of ``transip-md export`` (a file for ``pair_style mliap unified``)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lammps-plugin-path",
        help="print the path of transipplugin.so (for `plugin load` or LAMMPS_PLUGIN_PATH)",
    )
    p.add_argument("--dir", action="store_true", help="print its directory (for LAMMPS_PLUGIN_PATH)")
    p.set_defaults(func=run)
    _register_mliap_export(sub)


def run(args: argparse.Namespace) -> int:
    from .plugin import PluginNotBuiltError, plugin_path

    try:
        path = plugin_path()
    except PluginNotBuiltError as exc:
        raise SystemExit(f"transip-md lammps-plugin-path: {exc}") from exc
    print(path.parent if args.dir else path)
    return 0


def _register_mliap_export(sub: argparse._SubParsersAction) -> None:
    """``transip-md export --lammps-mliap MODEL [--charge Q] [--spin M] OUTPUT``."""
    from ..model.commands import add_export_source

    p = add_export_source(
        sub,
        "--lammps-mliap",
        _write_mliap,
        help="wrap the compiled local model FILE for `pair_style mliap unified`",
        options=("charge", "spin"),
    )
    p.add_argument("--charge", type=int, help="--lammps-mliap: total charge stored in the file, e (default: 0)")
    p.add_argument("--spin", type=int, help="--lammps-mliap: spin multiplicity stored in the file (default: 1)")


def _write_mliap(args: argparse.Namespace, output: str) -> str:
    from .mliap import export_mliap

    charge = 0 if args.charge is None else args.charge
    spin = 1 if args.spin is None else args.spin
    export_mliap(args.lammps_mliap, output, charge=charge, multiplicity=spin)
    return f"wrote {output} (ML-IAP unified; load with `pair_style mliap unified {output} 0`)"
