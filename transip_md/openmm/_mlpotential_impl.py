"""The openmm-ml ``MLPotentialImpl`` for 'transip' (see :mod:`transip_md.openmm.mlpotential`)."""

from __future__ import annotations

import os

import openmm
from openmmml.mlpotential import MLPotentialImpl

from .force import TransIPForce, load_model, resolve_device
from .mlpotential import default_model_path
from .torch_module import DEFAULT_SKIN_ANGSTROM

#: Keyword arguments that openmm-ml's embeddings pass through to addForces and that are not ours.
_EMBEDDING_ARGS = {"mlLongRange", "linkAtomDistances"}


class TransIPPotentialImpl(MLPotentialImpl):
    """A compiled TransIP model as an openmm-ml potential."""

    def __init__(
        self,
        name: str,
        modelPath: str | os.PathLike | None = None,  # noqa: N803 - openmm-ml's spelling
        device: str = "auto",
        precision: str | None = None,
        backend: str = "auto",
    ) -> None:
        if modelPath is None:
            modelPath = default_model_path()
            if modelPath is None:
                raise ValueError(
                    "MLPotential('transip') needs modelPath=...: this installation ships no pretrained model"
                )
        self.name = name
        self.model_path = os.fspath(modelPath)
        self.device = device
        self.precision = precision
        self.backend = backend
        self.model = load_model(self.model_path, resolve_device(device))  # fail early on a bad file

    def getMLLongRange(self) -> bool:  # noqa: N802
        """A local model is short-ranged (cutoff); a global model couples every pair of its ML atoms."""
        return self.model.cutoff is None

    def addForces(  # noqa: N802
        self,
        topology: openmm.app.Topology,
        system: openmm.System,
        atoms,
        forceGroup: int,  # noqa: N803
        charge: int = 0,
        multiplicity: int = 1,
        backend: str | None = None,
        precision: str | None = None,
        device: str | None = None,
        periodic: bool | None = None,
        properties: dict[str, str] | None = None,
        skinAngstrom: float = DEFAULT_SKIN_ANGSTROM,  # noqa: N803 - openmm-ml's spelling
        torchCompile: bool = False,  # noqa: N803
        **args,
    ) -> None:
        """Add a TransIPForce; ``skinAngstrom`` (torch backend pair list, Å) and ``torchCompile`` (python
        backend) are TransIPForce's ``skin_angstrom`` and ``torch_compile``."""
        unknown = set(args) - _EMBEDDING_ARGS
        if unknown:
            raise TypeError(f"MLPotential('transip'): unknown argument(s) {sorted(unknown)}")
        force = TransIPForce(
            self.model_path,
            atoms=None if atoms is None else list(atoms),
            charge=charge,
            multiplicity=multiplicity,
            periodic=periodic,
            device=device or self.device,
            precision=precision if precision is not None else self.precision,
            backend=backend or self.backend,
            topology=topology,
            system=system,
            force_group=forceGroup,
            properties=properties,
            skin_angstrom=skinAngstrom,
            torch_compile=torchCompile,
        )
        system.addForce(force)
