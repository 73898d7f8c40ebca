"""openmm-ml potential 'transip' (entry point group ``openmmml.potentials``).

    from openmmml import MLPotential
    potential = MLPotential("transip", modelPath="model.pt")          # or no modelPath: the shipped model
    system = potential.createSystem(topology, charge=0, multiplicity=1)
    mixed = potential.createMixedSystem(topology, mm_system, ml_atoms)  # ML/MM, mechanical embedding

Keyword arguments of createSystem/createMixedSystem reaching ``addForces``: ``charge``, ``multiplicity``,
``backend`` ('auto' | 'torch' | 'python'), ``precision`` (None | 'single' | 'double'), ``device``,
``periodic`` and ``properties`` (TorchForce properties); see :func:`transip_md.openmm.TransIPForce`.
"""

from __future__ import annotations

import os

# openmm-ml loads its entry points while ``openmmml.mlpotential`` is being imported, so this module must
# not import openmmml at import time (that would be a circular import whichever module comes first): the
# factory is duck-typed (openmm-ml only calls ``createImpl``) and the MLPotentialImpl subclass lives in
# :mod:`transip_md.openmm._mlpotential_impl`, imported when the first potential is created.


def default_model_path() -> str | None:
    """The pretrained model shipped with transip-md, or None if this installation has none."""
    try:
        from ..data import default_model_path as shipped
    except ImportError:
        return None
    path = shipped()
    return os.fspath(path) if path is not None and os.path.exists(path) else None


class TransIPPotentialImplFactory:
    """Creates :class:`TransIPPotentialImpl` for ``MLPotential('transip', modelPath=...)``."""

    def createImpl(self, name: str, modelPath: str | os.PathLike | None = None, **args):  # noqa: N802,N803
        """A ``TransIPPotentialImpl`` (an openmm-ml ``MLPotentialImpl``) for the model file ``modelPath``."""
        from ._mlpotential_impl import TransIPPotentialImpl

        return TransIPPotentialImpl(name, modelPath, **args)
