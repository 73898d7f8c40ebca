"""``transip-md lammps-plugin-path``: print where the compiled pair_style transip plugin is."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lammps-plugin-path",
        help="print the path of transipplugin.so (for `plugin load` or LAMMPS_PLUGIN_PATH)",
    )
    p.add_argument("--dir", action="store_true", help="print its directory (for LAMMPS_PLUGIN_PATH)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .plugin import PluginNotBuiltError, plugin_path

    try:
        path = plugin_path()
    except PluginNotBuiltError as exc:
        raise SystemExit(f"transip-md lammps-plugin-path: {exc}") from exc
    print(path.parent if args.dir else path)
    return 0
