"""LAMMPS bridges: the C++ ``pair_style transip`` plugin (helpers to find and load it) and the ML-IAP
unified adapter for ``pair_style mliap unified`` (:mod:`transip_md.lammps.mliap`)."""

from .plugin import PluginNotBuiltError, load_plugin, plugin_dir, plugin_path, preload_mpi

__all__ = ["PluginNotBuiltError", "load_plugin", "plugin_dir", "plugin_path", "preload_mpi"]
