"""Optional ``torch.compile`` of a model file, behind a flag; the TorchScript file stays the deployment.

``torch_compiled(compiled)`` rebuilds the eager :class:`TransIP` from the file (config and weights) and
wraps its Transformer (``_encode``: token sequences -> features) with ``torch.compile``. Neighbourhood
construction, chunking and autograd stay eager, so energies and forces are those of the file (to float
round-off). Shapes are compiled statically: local sequence lengths are padded to a multiple of
``sequence_multiple`` (padding tokens get zero attention weight), so a run sees a handful of shapes and
compiles each once (tens of seconds each on CPU).

Measured (bench/torch_compile.py, results in bench/results/torch_compile.md, one CPU thread): 11-28 % less
time per energy+force call at 21-1,029 atoms, after 17-51 s of compilation (empty inductor cache), so it
pays in long runs only; the TorchScript file stays the default and the deployment format.
"""

from __future__ import annotations

import torch

from .compiled import CompiledModel, eager_model
from .transip import TransIP

#: Local sequence lengths are padded to a multiple of this under torch.compile (few distinct shapes).
COMPILE_SEQUENCE_MULTIPLE = 8


def torch_compiled(compiled: CompiledModel, sequence_multiple: int = COMPILE_SEQUENCE_MULTIPLE) -> TransIP:
    """An eager TransIP equal to ``compiled`` whose Transformer runs through ``torch.compile`` (static shapes)."""
    if sequence_multiple < 1:
        raise ValueError(f"sequence_multiple must be >= 1, got {sequence_multiple}")
    model = eager_model(compiled)
    for p in model.parameters():
        p.requires_grad_(False)
    model.sequence_multiple = int(sequence_multiple)
    model.max_length_groups = 1  # one padded batch per call: group sizes would add shapes to compile
    model._encode = torch.compile(model._encode, dynamic=False)  # instance attribute shadows the method
    return model
