"""Charge-site energy: where an added or removed electron (or an unpaired spin) sits, learned per atom.

The token conditioning (N_REF / N) (Q, M - 1) spreads a structure's charge and spin evenly over its atoms, so to
first order the energy of an extra electron is the *mean* of local responses. A vertical electron affinity or
singlet-triplet gap is closer to the best site's (the electron goes to the strongest acceptor; a saturated
molecule has none). This term lets the model put the charge where it belongs, as SpookyNet's electronic
embedding does with learned weights:

    E_sites(Q, M) = sum_k c_k(Q, M) * sum_i w_ik a_ik,     w_ik = softmax over the structure's atoms of s_ik,

with per-atom scores s_ik and site energies a_ik from the atom's final features (one small MLP, K channels) and
channel weights c(Q, M) = MLP(Q, M - 1) - MLP(0, 0) in eV, so E_sites is exactly zero for the neutral singlet.
A softmax-weighted mean is intensive, so the term is size-consistent (k far-apart copies of a molecule give the
same value as one). Atom i's share is sum_k c_k w_ik a_ik (the shares sum to E_sites).

Locality: the softmax normaliser is a sum over all atoms of the structure. It is exact wherever one call sees
every atom as a centre (training, ASE, OpenMM, LAMMPS on one MPI rank); under domain decomposition it would need
a sum over ranks, so the LAMMPS plugin refuses charged or open-shell runs of such a model on more than one rank,
and a local model evaluates such structures without chunking (docs/model.md).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class ChargeSites(nn.Module):
    """Per-atom charge-site energies (eV, float64) from final atom features; zero for the neutral singlet."""

    def __init__(self, d_model: int, channels: int, hidden: int = 16) -> None:
        super().__init__()
        self.channels = int(channels)
        self.site = nn.Sequential(nn.Linear(d_model, d_model), nn.SiLU(), nn.Linear(d_model, 2 * self.channels))
        self.state = nn.Sequential(nn.Linear(2, hidden), nn.SiLU(), nn.Linear(hidden, self.channels))
        # The site energies a start at zero, so the term starts at exactly zero (a model initialised from one without
        # it starts with its energies); c(Q, M) and the scores start random, so a gets gradients at once. (Zero c
        # instead was a trap: its gradient is the correlation of random site energies with the gap errors, and the
        # site network's gradient is proportional to c; measured, c stayed at ~1e-3 eV over 18,000 steps.)
        out = self.site[2]
        with torch.no_grad():
            out.weight[self.channels :].zero_()
            out.bias[self.channels :].zero_()

    def channel_weights(self, charge: Tensor, spin: Tensor) -> Tensor:
        """c(Q, M) (B, K) in eV, float64; exactly zero for (0, 1)."""
        dtype = self.state[0].weight.dtype
        x = torch.stack([charge.to(dtype), spin.to(dtype) - 1.0], dim=-1)
        return (self.state(x) - self.state(torch.zeros_like(x))).to(torch.float64)

    def forward(self, features: Tensor, charge: Tensor, spin: Tensor, batch: Tensor) -> Tensor:
        """Per-atom shares (n,) in eV float64 for atom features (n, d) of structures ``batch`` (n,).

        Every atom of a structure must be among the n (the softmax runs over them).
        """
        k = self.channels
        n_struct = charge.shape[0]
        out = self.site(features).to(torch.float64)
        score = out[:, :k]
        site_energy = out[:, k:]
        index = batch.unsqueeze(-1).expand(-1, k)
        # softmax per structure and channel, shifted by the (constant, detached) structure maximum
        peak = torch.full((n_struct, k), -math.inf, dtype=torch.float64, device=features.device)
        peak = peak.scatter_reduce(0, index, score.detach(), reduce="amax", include_self=True)
        weight = torch.exp(score - peak[batch])
        norm = torch.zeros(n_struct, k, dtype=torch.float64, device=features.device).index_add(0, batch, weight)
        weight = weight / norm[batch]
        c = self.channel_weights(charge, spin)
        return (c[batch] * weight * site_energy).sum(-1)
