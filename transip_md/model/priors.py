"""Physics priors added to the learned energy: short-range nuclear repulsion and per-state energies.

Both are part of the compiled model file, so every engine gets them, and both are strictly local.

* :class:`NuclearRepulsion` - a screened Coulomb (ZBL universal screening function) repulsion between every
  pair of atoms, switched off smoothly well inside the cutoff, at ``range_factor`` x the sum of the two atoms'
  covalent radii. Below that distance the energy of two atoms rises steeply and monotonically (both the
  screened Coulomb term and the switch decrease with distance), so no learned surface can let atoms fuse.
  Energies in eV, distances in Å; each edge i -> j gives half its pair energy to atom i (engines list every
  pair in both directions: all pairs, or a full neighbour list).
* :class:`StateEnergy` - a learned energy of the total charge Q and spin multiplicity M of a structure,
  zero for the neutral singlet, shared out as E(Q, M) / N over the structure's N atoms (size-consistent:
  the molecule gets E(Q, M) once, whatever its size).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..units import COULOMB_EV_ANGSTROM

#: ZBL universal screening function phi(x) = sum_k c_k exp(-d_k x) (Ziegler, Biersack, Littmark 1985).
ZBL_COEFFICIENTS = (0.18175, 0.50986, 0.28022, 0.02817)
ZBL_EXPONENTS = (3.19980, 0.94229, 0.40290, 0.20162)
#: Screening length a = ZBL_LENGTH / (Z_i^0.23 + Z_j^0.23), Å (0.8854 Bohr radii).
ZBL_LENGTH = 0.46850
ZBL_POWER = 0.23


def covalent_radii_table() -> Tensor:
    """Covalent radii (Å) indexed by atomic number 0..118 (ASE's table, Cordero et al. 2008)."""
    from ase.data import covalent_radii

    return torch.tensor([float(r) for r in covalent_radii[:119]], dtype=torch.float64)


def polynomial_switch(x: Tensor, power: int) -> Tensor:
    """1 at x = 0, 0 for x >= 1, C^2 at x = 1: 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2)."""
    p = float(power)
    xc = torch.clamp(x, min=0.0, max=1.0)
    xp = xc**power
    value = 1.0 - 0.5 * (p + 1.0) * (p + 2.0) * xp + p * (p + 2.0) * xp * xc - 0.5 * p * (p + 1.0) * xp * xc * xc
    return torch.where(x < 1.0, value, torch.zeros_like(x))


class NuclearRepulsion(nn.Module):
    """ZBL-screened nuclear repulsion, switched to zero at ``range_factor`` x (r_cov,i + r_cov,j)."""

    def __init__(self, range_factor: float = 1.0, switch_power: int = 6) -> None:
        super().__init__()
        self.range_factor = float(range_factor)
        self.switch_power = int(switch_power)
        self.register_buffer("covalent_radii", covalent_radii_table())
        self.register_buffer("zbl_coefficients", torch.tensor(ZBL_COEFFICIENTS, dtype=torch.float64))
        self.register_buffer("zbl_exponents", torch.tensor(ZBL_EXPONENTS, dtype=torch.float64))
        self.screening_length = ZBL_LENGTH
        self.screening_power = ZBL_POWER
        self.coulomb = COULOMB_EV_ANGSTROM

    def pair_energy(self, z_i: Tensor, z_j: Tensor, dist: Tensor) -> Tensor:
        """Pair energies (eV, float64) for atomic numbers z_i, z_j at distances ``dist`` (Å)."""
        r = dist.to(torch.float64)
        zi = z_i.to(torch.float64)
        zj = z_j.to(torch.float64)
        a = self.screening_length / (zi**self.screening_power + zj**self.screening_power)
        r_off = self.range_factor * (self.covalent_radii[z_i] + self.covalent_radii[z_j])
        inside = r < r_off
        r_safe = torch.where(inside, r, r_off)  # finite values (and gradients) where the switch is zero
        r_safe = torch.clamp(r_safe, min=1e-6)
        x = r_safe / a
        phi = (self.zbl_coefficients * torch.exp(-self.zbl_exponents * x.unsqueeze(-1))).sum(-1)
        coulomb = self.coulomb * zi * zj / r_safe
        energy = coulomb * phi * polynomial_switch(r_safe / r_off, self.switch_power)
        return torch.where(inside, energy, torch.zeros_like(energy))

    def forward(self, species: Tensor, edge_index: Tensor, dist: Tensor, n_centers: int) -> Tensor:
        """Per-atom repulsion energies (n_centers,) in eV: half of each edge's pair energy to its source."""
        src = edge_index[0]
        pair = self.pair_energy(species[src], species[edge_index[1]], dist)
        out = torch.zeros(n_centers, dtype=torch.float64, device=dist.device)
        return out.index_add(0, src, 0.5 * pair)


class StateEnergy(nn.Module):
    """E(Q, M) in eV for total charge Q (e) and multiplicity M, exactly zero for (0, 1).

    E = w . [Q, Q^2, M - 1, (M - 1)^2] + MLP(Q, M - 1) - MLP(0, 0): the linear part is fitted by least squares
    on the training energies before training (``set_linear``), the MLP (zero at start) learns the rest.
    """

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.linear = nn.Parameter(torch.zeros(4, dtype=torch.float64))
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.SiLU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    @staticmethod
    def features(charge: Tensor, spin: Tensor) -> Tensor:
        """(B, 4) float64 features [Q, Q^2, M - 1, (M - 1)^2] of the linear part."""
        q = charge.to(torch.float64)
        s = spin.to(torch.float64) - 1.0
        return torch.stack([q, q * q, s, s * s], dim=-1)

    @torch.jit.unused
    def set_linear(self, weights: Tensor) -> None:
        """Set the linear coefficients (eV per feature) of the state energy."""
        with torch.no_grad():
            self.linear.copy_(weights.to(torch.float64))

    def forward(self, charge: Tensor, spin: Tensor) -> Tensor:
        """(B,) eV float64 for charge (B,) in e and multiplicity (B,)."""
        dtype = self.net[0].weight.dtype
        x = torch.stack([charge.to(dtype), spin.to(dtype) - 1.0], dim=-1)
        learned = (self.net(x) - self.net(torch.zeros_like(x))).squeeze(-1).to(torch.float64)
        return self.features(charge, spin) @ self.linear.to(torch.float64) + learned
