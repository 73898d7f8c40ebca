"""The compiled-model file contract: one TorchScript file with JSON metadata (no pickle).

Metadata keys (``transip_metadata.json`` inside the file's ``_extra_files``):
  format             "transip-md-model"
  format_version     integer, FORMAT_VERSION for files this release writes
  elements           atomic numbers the model knows, in embedding order
  cutoff             Å, or null for a global (all-pairs, isolated molecules only) model
  n_layers           number of Transformer blocks
  dtype              "float32" or "float64" (parameters; energies always come back as float64)
  uses_charge_spin   whether total charge and spin multiplicity condition the tokens
  reference_energies {atomic number: eV} per-element reference energies added to each atom
  config             the TransIPConfig the network was built from
  provenance         free-form (data set hash, training config, transip-md version, date)
  symmetrize         optional; only in a symmetrised file (transip_md.model.symmetrize, `transip-md export
                     --symmetrize`): {"group": "tetrahedral"|"octahedral"|"icosahedral", "frames": K rotations,
                     "seed": int or null (null: axis-aligned group)}. The TorchScript module is then a wrapper
                     averaging the base model over K rotated frames (K evaluations per call), with the same
                     methods; the other keys are the base model's. Such a file cannot be rebuilt as an eager
                     TransIP (recompile, torch.compile: ModelFileError) or symmetrised again.

The TorchScript methods engines call (all lengths Å, energies eV, float64 out):
  energy_and_gradient(species, edge_index, edge_vec, charge, spin, batch, n_centers=-1, chunk_size=0,
                      natoms=None) -> (per-atom energies (n_centers,), dE/d edge_vec (E, 3))
  forward(species, edge_index, edge_vec, charge, spin, batch, n_centers=-1, natoms=None) -> per-atom energies
``natoms`` (B,) float64 is the total number of atoms of each structure; None counts batch[:n_centers], which is
right in every engine that passes no ghost atoms. An engine with ghosts or domain decomposition (LAMMPS) passes
its global atom count; for the neutral singlet the result does not depend on it.

Format 3 (written only for models with a learned charge/spin spread, module attribute ``learned_spread`` True;
other models are still written as format 2) adds the methods an engine that splits a structure over processes
needs, because the spread uses one sum W of per-atom weights over the whole structure (model/spread.py):
  charge_spread_sums(species, edge_index, edge_vec, batch, n_struct, n_centers=-1) -> W of these centres (B,)
  energy_gradients_given_spread(species, edge_index, edge_vec, charge, spin, batch, n_centers=-1, chunk_size=0,
                                natoms=None, spread_total=None) -> (energies, dE/d edge_vec at fixed W, dE/dW (B,))
  charge_spread_sum_gradient(species, edge_index, edge_vec, batch, weight_grad, n_centers=-1) -> d(sum_b
                             weight_grad_b W_b)/d edge_vec (E, 3)
Exact recipe for P pieces: W = sum of the pieces' charge_spread_sums; each piece calls
energy_gradients_given_spread with spread_total = W; G = sum of the pieces' dE/dW; each piece adds
charge_spread_sum_gradient(..., G) to its edge gradient. energy_and_gradient does all this itself when every atom
of each structure is a centre, and refuses (RuntimeError) a learned-spread call whose centres are only part of a
structure (natoms larger than the centre count).
"""

from __future__ import annotations

from typing import Any

FORMAT_NAME = "transip-md-model"
#: 2: nuclear-repulsion prior, size-consistent charge/spin conditioning and the optional ``natoms`` argument.
#: 3: learned charge/spin spread and the three spread methods above (only models that have the spread).
FORMAT_VERSION = 3
#: Oldest format this release runs (files of older versions lack the priors and the natoms argument).
OLDEST_FORMAT_VERSION = 2
METADATA_FILE = "transip_metadata.json"
REQUIRED_KEYS = (
    "format",
    "format_version",
    "elements",
    "cutoff",
    "n_layers",
    "dtype",
    "uses_charge_spin",
    "reference_energies",
    "config",
)


class ModelFileError(RuntimeError):
    """A model file is missing, unreadable, foreign, or of a format this release does not understand."""


def check_metadata(meta: Any, path: str) -> dict[str, Any]:
    """Validate metadata read from ``path``; return it or raise :class:`ModelFileError`."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path}: not a transip-md model file (metadata 'format' is not {FORMAT_NAME!r})")
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise ModelFileError(f"{path}: metadata has no integer 'format_version'")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model format version {version} is newer than this transip-md understands "
            f"({FORMAT_VERSION}); upgrade transip-md"
        )
    if version < 1:
        raise ModelFileError(f"{path}: invalid model format version {version}")
    if version < OLDEST_FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model format version {version} was written by an older transip-md (before the nuclear-"
            f"repulsion prior and size-consistent charge/spin); this release runs versions "
            f"{OLDEST_FORMAT_VERSION}..{FORMAT_VERSION}: retrain, or use the transip-md that wrote it"
        )
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ModelFileError(f"{path}: model metadata lacks {missing}")
    if meta["dtype"] not in ("float32", "float64"):
        raise ModelFileError(f"{path}: unsupported dtype {meta['dtype']!r} in metadata")
    return meta
