"""OpenMM bridge: ``create_transip_force`` (alias ``TransIPForce``; TorchForce or PythonForce backend), the run
building blocks of :mod:`transip_md.openmm.simulation`, and the openmm-ml potential 'transip'."""

from .force import (
    SerializationError,
    TransIPCompute,
    TransIPForce,
    check_serializable,
    create_transip_force,
    load_model,
    openmmtorch_available,
    serialize_system,
    topology_atomic_numbers,
)

__all__ = [
    "SerializationError",
    "TransIPCompute",
    "TransIPForce",
    "create_transip_force",
    "check_serializable",
    "load_model",
    "openmmtorch_available",
    "serialize_system",
    "topology_atomic_numbers",
]
