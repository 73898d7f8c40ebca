"""ASE Calculator for compiled TransIP models (eV, Å, eV/Å^3)."""

from __future__ import annotations

import os

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from ..model.accelerate import torch_compiled
from ..model.compiled import CompiledModel, load_compiled
from ..model.evaluate import predict
from ..model.transip import TransIP
from ..validation import InputError, check_charge_spin, check_elements, check_positions


class TransIPCalculator(Calculator):
    """Energy, per-atom energies, forces and (periodic cells) stress from a compiled TransIP model.

    Total charge and spin multiplicity come from ``atoms.info['charge']`` (default 0) and
    ``atoms.info['spin']`` (multiplicity 2S+1, default 1; the OMol25/fairchem convention).
    The stress is the symmetric part of the virial over the volume: a non-equivariant model can have
    a small antisymmetric virial (a torque), which ASE's stress cannot hold.

    ``compile=True`` runs the model's Transformer through ``torch.compile`` instead of the TorchScript
    file (same numbers to float round-off; see :mod:`transip_md.model.accelerate`). Off by default: it
    saved 11-28 % per call on one CPU thread (bench/torch_compile.py) but each new shape compiles for
    tens of seconds, so it pays in long runs only.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self, model_path: str | os.PathLike | CompiledModel, device: str = "cpu", compile: bool = False, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.model = model_path if isinstance(model_path, CompiledModel) else load_compiled(model_path, device)
        self.device = device
        self.evaluator: CompiledModel | TransIP = torch_compiled(self.model) if compile else self.model

    def calculate(self, atoms: Atoms | None = None, properties=None, system_changes=all_changes) -> None:
        super().calculate(atoms, properties or ["energy"], system_changes)
        atoms = self.atoms
        charge = atoms.info.get("charge", 0)
        spin = atoms.info.get("spin", 1)
        numbers = atoms.numbers
        check_elements(numbers, self.model.elements)
        check_charge_spin(numbers, charge, spin)
        periodic = bool(np.any(atoms.pbc))
        if periodic and self.model.cutoff is None:
            raise InputError(
                f"{self.model.path}: a global (all-pairs) model cannot run a periodic system; use a cutoff model"
            )
        cell = np.asarray(atoms.cell, dtype=np.float64)
        if periodic and abs(np.linalg.det(cell)) < 1e-12:
            raise InputError("periodic atoms need a cell with non-zero volume (Å^3)")
        check_positions(numbers, atoms.positions, cell, atoms.pbc)
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
