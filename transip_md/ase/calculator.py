"""ASE Calculator for compiled TransIP models (eV, Å, eV/Å^3)."""

from __future__ import annotations

import os

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from ..model.accelerate import torch_compiled
from ..model.compiled import CompiledModel, load_compiled
from ..model.engine import require_local
from ..model.evaluate import predict
from ..model.transip import TransIP
from ..validation import check_charge_spin, check_elements

#: ``atoms.info`` keys read by the calculator (and compared by its cache check), with their defaults.
INFO_DEFAULTS = {"charge": 0, "spin": 1}


def charge_and_spin(atoms: Atoms) -> tuple[object, object]:
    """(total charge e, spin multiplicity 2S+1) from ``atoms.info``, defaults 0 and 1."""
    return tuple(atoms.info.get(key, default) for key, default in INFO_DEFAULTS.items())


class TransIPCalculator(Calculator):
    """Energy, per-atom energies, forces and (periodic cells) stress from a compiled TransIP model.

    Total charge and spin multiplicity come from ``atoms.info['charge']`` (default 0) and
    ``atoms.info['spin']`` (multiplicity 2S+1, default 1; the OMol25/fairchem convention).
    The stress is the symmetric part of the virial over the volume: a non-equivariant model can have
    a small antisymmetric virial (a torque), which ASE's stress cannot hold.

    ``compile=True`` runs the model's Transformer through ``torch.compile`` instead of the TorchScript
    file (same numbers to float round-off; see :mod:`transip_md.model.accelerate`). Off by default: each new
    shape compiles for tens of seconds, so it pays in long runs only (timings: bench/results/torch_compile.md).
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self, model_path: str | os.PathLike | CompiledModel, device: str = "cpu", compile: bool = False, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.model = model_path if isinstance(model_path, CompiledModel) else load_compiled(model_path, device)
        self.device = device
        self.evaluator: CompiledModel | TransIP = torch_compiled(self.model) if compile else self.model

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """ASE's changed-property check, plus the total charge and spin multiplicity in ``atoms.info``.

        Without this a calculator would hand back the cached energy after only ``atoms.info`` changed.
        """
        changes = super().check_state(atoms, tol)
        if self.atoms is not None and charge_and_spin(self.atoms) != charge_and_spin(atoms):
            changes.append("info")
        return changes

    def calculate(self, atoms: Atoms | None = None, properties=None, system_changes=all_changes) -> None:
        super().calculate(atoms, properties or ["energy"], system_changes)
        atoms = self.atoms
        charge, spin = charge_and_spin(atoms)
        numbers = atoms.numbers
        check_elements(numbers, self.model.elements)
        check_charge_spin(numbers, charge, spin)
        periodic = bool(np.any(atoms.pbc))
        if periodic:
            require_local(self.model.cutoff, "periodic", self.model.path)
        cell = np.asarray(atoms.cell, dtype=np.float64)
        pred = predict(
            self.evaluator,
            numbers,
            atoms.positions,
            cell,
            atoms.pbc,
            int(charge),
            int(spin),
            periodic,
            self.device,
        )
        self.results["energy"] = pred.energy
        self.results["free_energy"] = pred.energy
        self.results["energies"] = pred.energies
        self.results["forces"] = pred.forces
        if periodic and atoms.pbc.all():
            w = pred.virial
            stress = -0.5 * (w + w.T) / atoms.get_volume()
            self.results["stress"] = full_3x3_to_voigt_6_stress(stress)
