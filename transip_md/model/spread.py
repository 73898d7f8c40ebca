"""Learned charge/spin spread: how a structure's total charge Q and spin M - 1 are shared out over its atoms.

With ``learned_charge_spread`` each centre i gets the fraction w_i / W of the total, W = sum_j w_j over every atom
of its structure, instead of the even 1 / N. The weight w_i = softplus(a_i) > 0 (dimensionless) comes from a
cheap local descriptor of atom i: its element embedding plus, over its neighbours within the cutoff, Gaussian
distance features (Å) times a smooth envelope times the neighbour's element embedding. The last layer starts at
zero, so a new spread is exactly the even spread (w_i = ln 2 for every atom) until training moves it.

W is one global number per structure. An engine that computes every atom of a structure in one call gets it
inside the model; an engine that splits a structure (LAMMPS domain decomposition, centres in chunks) sums the
partial W over the pieces first and passes it (``spread_total``), and adds the gradient that flows through W
(docs/model.md, "Learned charge/spin spread").
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import safe_norm


class ChargeSpread(nn.Module):
    """Per-centre spread weights w_i > 0 from the element and neighbourhood (distances in Å)."""

    def __init__(self, n_elements: int, cutoff: float, n_basis: int = 8, width: int = 16) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.self_embed = nn.Embedding(n_elements, width)
        self.neighbour_embed = nn.Embedding(n_elements, width)
        self.radial = nn.Linear(n_basis, width, bias=False)
        self.out = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, 1))
        nn.init.zeros_(self.out[2].weight)
        nn.init.zeros_(self.out[2].bias)
        self.register_buffer("centres", torch.linspace(0.5, max(self.cutoff, 1.0), n_basis))
        self.gaussian_width = 0.6  # Å

    def forward(self, elem: Tensor, edge_index: Tensor, edge_vec: Tensor, n_centers: int) -> Tensor:
        """Weights (n_centers,) in the model dtype for element indices (N,), edges i -> j (sources < n_centers)
        and edge vectors r_j - r_i (E, 3) in Å."""
        dtype = self.radial.weight.dtype
        r = safe_norm(edge_vec.to(dtype))
        envelope = torch.clamp(1.0 - (r / self.cutoff) ** 2, min=0.0) ** 2
        basis = torch.exp(-(((r.unsqueeze(-1) - self.centres.to(dtype)) / self.gaussian_width) ** 2))
        message = self.radial(basis * envelope.unsqueeze(-1)) * self.neighbour_embed(elem[edge_index[1]])
        summed = torch.zeros(n_centers, message.shape[1], dtype=dtype, device=message.device)
        summed = summed.index_add(0, edge_index[0], message)
        return torch.nn.functional.softplus(self.out(self.self_embed(elem[:n_centers]) + summed).squeeze(-1))
