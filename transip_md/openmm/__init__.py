"""OpenMM bridge: ``TransIPForce`` (TorchForce or PythonForce backend) and the openmm-ml potential 'transip'."""

from .force import (
    SerializationError,
    TransIPCompute,
    TransIPForce,
    check_serializable,
    load_model,
    openmmtorch_available,
    serialize_system,
    topology_atomic_numbers,
)

__all__ = [
    "SerializationError",
    "TransIPCompute",
    "TransIPForce",
    "check_serializable",
    "load_model",
    "openmmtorch_available",
    "serialize_system",
    "topology_atomic_numbers",
]
