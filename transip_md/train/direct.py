"""Direct-force pretraining (eSEN's recipe): train with forces read off the network, then conservatively.

A conservative training step needs forces -dE/dx and then the gradient of a force loss with respect to the
parameters: a double backward through the network, about twice the cost of a plain forward and backward
(measured on the shipped recipe, one thread: 0.050 against 0.096 s per step of 128 atoms). During the first
``direct_forces`` share of a run the trainer instead fits forces predicted directly by a small head on the same
Transformer features,

    F_i^direct = energy_scale * sum_{j in N(i)} s(h_j^(i)) r_ij  +  F_i^prior      (eV/Å)

where h_j^(i) is token j's final feature vector in centre i's own neighbourhood sequence, r_ij its edge vector
(Å), s = :class:`DirectForceHead` a two-layer MLP to one number per token, and F^prior = -dE^prior/dx the
forces of the model's fixed priors (nuclear repulsion; computed by autograd, no parameters in their path). The
energy term is the model's own energy. The rest of the run trains as usual (forces = -dE/dx), so the model file,
which never contains the head, stays conservative. Local models only: the head reads each centre's own
neighbourhood sequence, which a global model does not have.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..model.engine import forces_from_edge_gradient
from .data import Batch


class DirectForceHead(nn.Module):
    """One scalar per neighbourhood token (S, L, d) -> (S, L, 1): the weight of its edge vector in the force."""

    def __init__(self, d_model: int, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_model, d_model), nn.SiLU(), nn.Linear(d_model, 1)).to(dtype)

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)


def direct_outputs(model: nn.Module, head: nn.Module, batch: Batch, vec: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(per-atom energies eV float64 (N,), direct forces eV/Å float64 (N, 3), centre features (N, d)) of ``batch``
    with edge vectors ``vec`` (Å); energies and forces include the priors."""
    args = (batch.species, batch.edge_index, vec.detach(), batch.charge, batch.spin, batch.batch)
    energies, forces, features = model.direct_force_outputs(head, *args)
    vec_prior = vec.detach().requires_grad_(True)
    prior = model.prior_energies(*args[:2], vec_prior, *args[3:], -1)
    (grad,) = torch.autograd.grad(prior.sum(), vec_prior, retain_graph=True, allow_unused=True)
    if grad is not None:  # repulsion prior on: its forces (fixed functions of the positions)
        forces = forces + forces_from_edge_gradient(grad.detach().to(torch.float64), batch.edge_index, len(energies))
    return energies + prior, forces, features
