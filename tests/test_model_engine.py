"""transip_md.model.engine: the engine-call rules every bridge shares (issue 16 #1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ETHANOL_A, ETHANOL_Z, make_model

from transip_md.model import predict
from transip_md.model.engine import (
    GlobalModelError,
    call_energy_and_gradient,
    check_electron_parity,
    electron_parity_error,
    electron_parity_ok,
    forces_from_edge_gradient,
    model_inputs,
    require_local,
    virial_from_edge_gradient,
)
from transip_md.model.graph import all_pairs, edge_index
from transip_md.validation import InputError


def test_parity_rule_scalar_and_vectorised():
    # ethanol: 26 electrons; doublet impossible, triplet possible; cation doublet possible
    assert electron_parity_error(26, 0, 1) is None
    assert electron_parity_error(26, 0, 3) is None
    assert electron_parity_error(26, 1, 2) is None
    assert "26 electrons (charge 0) cannot have spin multiplicity 2" in electron_parity_error(26, 0, 2)
    assert "leaves -1 electrons" in electron_parity_error(1, 2, 1)
    assert "multiplicity must be an integer >= 1" in electron_parity_error(2, 0, 0)
    assert "integer number of e" in electron_parity_error(2, 0.5, 1)
    with pytest.raises(InputError, match="impossible charge/spin"):
        check_electron_parity(26, 0, 2)
    ok = electron_parity_ok(np.array([26, 26, 26, 1, 2]), np.array([0, 0, 1, 0, 0]), np.array([1, 2, 2, 1, 3]))
    assert ok.tolist() == [True, False, True, False, True]


def test_require_local():
    require_local(4.0, "periodic")
    with pytest.raises(GlobalModelError, match="global .all-pairs. model cannot run a periodic system"):
        require_local(None, "periodic", "m.pt")
    with pytest.raises(GlobalModelError, match="m.pt: a global .all-pairs. model cannot run in LAMMPS"):
        require_local(None, "lammps", "m.pt")


def test_edge_gradient_to_forces_and_virial_is_minus_the_position_gradient():
    """F = -dE/dx and W = -sum r (x) dE/dr, checked against autograd through the positions."""
    model = make_model(None)
    pos = torch.tensor(ETHANOL_A, requires_grad=True)
    topo = all_pairs(len(ETHANOL_Z))
    index = edge_index(topo)
    vec = pos[index[1]] - pos[index[0]]
    inputs = model_inputs(torch.tensor(ETHANOL_Z), index, vec.detach(), 0, 1)
    energies, grad = call_energy_and_gradient(model, inputs)
    forces = forces_from_edge_gradient(grad, index, len(ETHANOL_Z))
    energy = model(torch.tensor(ETHANOL_Z), index, vec, *inputs[3:]).sum()
    (dx,) = torch.autograd.grad(energy, pos)
    assert float(energies.sum()) == pytest.approx(float(energy), rel=1e-13)
    np.testing.assert_allclose(forces.numpy(), -dx.numpy(), rtol=1e-9, atol=1e-11)
    w = virial_from_edge_gradient(vec.detach(), grad)
    assert w.shape == (3, 3)
    ref = predict(model, np.array(ETHANOL_Z), ETHANOL_A, virial=True)
    np.testing.assert_allclose(w.numpy(), ref.virial, rtol=1e-12, atol=1e-12)
