"""The symmetry-error helper measures rotation (non-)invariance."""

from __future__ import annotations

import numpy as np
from conftest import ethanol, make_model, water_box

from transip_md.model import symmetry_error
from transip_md.model.symmetry import haar_rotations


def test_rotations_are_proper():
    rots = haar_rotations(8, seed=1)
    for r in rots:
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert abs(np.linalg.det(r) - 1.0) < 1e-12


def test_untrained_model_is_not_rotation_invariant():
    err = symmetry_error(make_model(None), ethanol(), n_rotations=8)
    assert err["energy_std_meV"] > 1.0
    assert err["force_rms_meV_per_A"] > 1.0


def test_helper_reports_zero_for_an_invariant_model():
    """With the rotary frequencies set to zero the network sees only distances: exactly invariant."""
    for cutoff, atoms in ((None, ethanol()), (4.0, water_box(2))):
        model = make_model(cutoff)
        model.rope.proj.zero_()
        err = symmetry_error(model, atoms, n_rotations=6)
        assert err["energy_std_meV"] < 1e-6
        assert err["force_rms_meV_per_A"] < 1e-6
