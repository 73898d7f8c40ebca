"""Covalent-scaled model from a trained plain one (``transip-md train --init-from CKPT --init-covalent``).

A plain model's two radial splines (the per-head pair bias and the per-token radial embedding) read the distance r
(Å); with ``model.covalent_scaled_radial`` they read s = r x 1.52 Å / (R_a + R_b) instead, over a longer range with
more knots (the same 0.16 Å spacing, docs/model.md). Every other weight has the same shape and meaning, so a trained
plain model can start a covalent-scaled run: all weights are copied and each spline is extended over the longer
range (same knots, the old constant tail repeated), so b_new(s) = b_old(s) for every s. The started model is then
the checkpoint exactly for every pair whose radius sum is the reference, C-C, and every other element pair starts
from its stretched or squeezed copy (C-H reads 1.42 r): the fine-tuning has to adapt those, and the checkpoint's
energies are not kept for molecules with other elements. With ``model.learned_radii`` the start is exact for every
pair: all learned radii start at half the reference sum (0.76 Å), so every pair reads r, and the fine-tuning moves
the radii (and the splines) only as far as the loss pays for.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..model.layers import SplineRadialBias
from ..model.transip import TransIP
from .config import describe_diff, diff_keys

_SPLINES = ("radial_bias", "token_radial")


class CovalentStartError(ValueError):
    """The checkpoint cannot start the requested covalent-scaled model; the message says why."""


def check_covalent_start(old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
    """Refuse anything but plain -> covalent-scaled radial inputs: every other model key must be the checkpoint's."""
    keys = [k for k in diff_keys(old_config, new_config) if k not in ("covalent_scaled_radial", "learned_radii")]
    if keys:
        diff = describe_diff(old_config, new_config, keys)
        raise CovalentStartError(
            "--init-covalent only switches on model.covalent_scaled_radial (and model.learned_radii); "
            f"other model keys differ ({diff})"
        )
    if old_config.get("covalent_scaled_radial", False) or not new_config.get("covalent_scaled_radial", False):
        raise CovalentStartError(
            "--init-covalent needs a plain-radial checkpoint and model.covalent_scaled_radial=true "
            f"(checkpoint: {old_config.get('covalent_scaled_radial', False)}, "
            f"new model: {new_config.get('covalent_scaled_radial', False)})"
        )


@torch.no_grad()
def extend_spline(old: SplineRadialBias, new: SplineRadialBias) -> None:
    """Set ``new``'s coefficients so that new(x) = old(x) for every x >= 0 (the same knots, more of them).

    The covalent-scaled splines have the plain ones' knot spacing exactly (model/transip.py ``_stretched_spline``),
    so the old coefficients are copied and the old last one, which the old spline holds constant beyond its last
    knot, is repeated over the extra knots: no fit, no round-off.
    """
    if new.n_knots < old.n_knots or abs(new.inv_spacing - old.inv_spacing) > 1e-9 * old.inv_spacing:
        raise CovalentStartError(
            f"radial spline of {new.n_knots} knots at {1 / new.inv_spacing:.6f} Å cannot extend one of "
            f"{old.n_knots} knots at {1 / old.inv_spacing:.6f} Å (needs the same spacing and at least as many knots)"
        )
    coefficients = torch.cat([old.coefficients, old.coefficients[-1:].expand(new.n_knots - old.n_knots, -1)])
    new.coefficients.copy_(coefficients.to(new.coefficients.dtype))


def covalent_start_into(model: TransIP, old_model: TransIP) -> None:
    """Copy every weight of the plain ``old_model`` into the covalent-scaled ``model``; extend both splines."""
    if not model.covalent_scaled or old_model.covalent_scaled:
        raise CovalentStartError("covalent start: the new model must be covalent-scaled and the old one plain")
    spline_keys = {f"{name}.coefficients" for name in _SPLINES}
    state = {k: v for k, v in old_model.state_dict().items() if k not in spline_keys}
    missing, unexpected = model.load_state_dict(state, strict=False)
    new_keys = spline_keys | ({"log_radii"} if model.log_radii is not None else set())
    if set(missing) != new_keys or unexpected:
        raise CovalentStartError(
            f"checkpoint weights do not fit the covalent-scaled model (missing {sorted(missing)}, "
            f"unexpected {unexpected})"
        )
    for name in _SPLINES:
        extend_spline(getattr(old_model, name), getattr(model, name))
    if model.log_radii is not None:
        # every radius the reference one: every pair reads r, so the started model is the checkpoint exactly
        with torch.no_grad():
            model.log_radii.fill_(math.log(model.reference_radius_sum / 2.0))
