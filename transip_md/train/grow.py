"""Deeper model from a trained one (``transip-md train --init-from CKPT --init-grow``).

The checkpoint's blocks keep their weights and the new blocks are appended after them as exact identity maps:
a pre-LayerNorm block adds ``out(attention)`` and ``mlp(...)`` to its input, so zero weights and biases in its
output projection and in the last MLP layer make it pass its input through. The grown model therefore starts
with the checkpoint's energies and forces (to round-off) and training can only add what the extra depth buys;
the new blocks' other weights keep their random initialisation, so gradients reach them after the first step.
"""

from __future__ import annotations

from typing import Any

import torch

from ..model.transip import TransIP
from .config import describe_diff, diff_keys


class GrowError(ValueError):
    """The checkpoint cannot be grown into the requested model; the message says which key differs."""


def check_growable(old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
    """Refuse anything but more blocks: every other model key must be the checkpoint's."""
    keys = [k for k in diff_keys(old_config, new_config) if k != "n_layers"]
    if keys:
        diff = describe_diff(old_config, new_config, keys)
        raise GrowError(f"--init-grow only adds blocks (model.n_layers); other model keys differ ({diff})")
    old, new = int(old_config["n_layers"]), int(new_config["n_layers"])
    if new <= old:
        raise GrowError(f"--init-grow: model.n_layers {new} must exceed the checkpoint's {old}")


def grow_into(model: TransIP, old_state: dict[str, torch.Tensor], old_layers: int) -> None:
    """Load ``old_state`` (a model with ``old_layers`` blocks) into the deeper ``model``; new blocks as identity."""
    missing, unexpected = model.load_state_dict(old_state, strict=False)
    new_prefixes = tuple(f"blocks.{i}." for i in range(old_layers, len(model.blocks)))
    stray = [k for k in missing if not k.startswith(new_prefixes)]
    if stray or unexpected:
        raise GrowError(f"checkpoint weights do not fit the grown model (missing {stray}, unexpected {unexpected})")
    with torch.no_grad():
        for block in model.blocks[old_layers:]:
            block.out.weight.zero_()
            block.out.bias.zero_()
            last = block.mlp[-1]
            last.weight.zero_()
            last.bias.zero_()
