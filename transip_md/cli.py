"""Command line: ``transip-md <command>``. Each command lives in the module of its layer.

Subcommand modules expose ``register(subparsers)``; a module whose optional dependencies are missing
is still listed, and tells the user what to install when invoked.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: (module, description) of every subcommand provider, in help order.
COMMAND_MODULES = (
    "transip_md.model.commands",
    "transip_md.train.commands",
    "transip_md.ase.commands",
    "transip_md.openmm.commands",
    "transip_md.lammps.commands",
    "transip_md.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transip-md", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("transip_md"):
                continue  # layer not present in this build
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
