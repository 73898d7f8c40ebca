"""The TransIP network and the compiled-model contract (TorchScript + JSON metadata)."""

from .compiled import CompiledModel, build_metadata, export, load_compiled, random_model
from .config import TransIPConfig
from .contract import FORMAT_VERSION, ModelFileError
from .evaluate import Prediction, predict
from .symmetry import symmetry_error
from .transip import TransIP

__all__ = [
    "FORMAT_VERSION",
    "CompiledModel",
    "ModelFileError",
    "Prediction",
    "TransIP",
    "TransIPConfig",
    "build_metadata",
    "export",
    "load_compiled",
    "predict",
    "random_model",
    "symmetry_error",
]
