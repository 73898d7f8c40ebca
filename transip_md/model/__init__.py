"""The TransIP network and the compiled-model contract (TorchScript + JSON metadata)."""

from .compiled import CompiledModel, build_metadata, eager_model, export, load_compiled, random_model, recompile
from .config import TransIPConfig
from .contract import FORMAT_VERSION, ModelFileError
from .evaluate import Prediction, predict
from .symmetrize import export_symmetrized
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
    "eager_model",
    "export",
    "export_symmetrized",
    "load_compiled",
    "predict",
    "random_model",
    "recompile",
    "symmetry_error",
]
