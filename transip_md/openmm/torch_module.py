"""The TorchScript module behind the 'torch' backend (``openmmtorch.TorchForce``), OpenMM units in and out.

``TransIPTorchModule.forward(positions, boxvectors=None) -> (energy, forces)``:
  positions  (N_system, 3) nm, any float dtype (OpenMM hands float32 or float64);
  boxvectors (3, 3) nm, rows a, b, c in OpenMM's reduced form (periodic systems only);
  energy     scalar kJ/mol (float64);
  forces     (N_system, 3) kJ/mol/nm in the dtype of ``positions`` (zero rows outside the ML atoms).

Everything runs inside TorchScript (no Python per step): the edges are built from the positions,
all pairs i != j for a global model, pairs closer than the cutoff for a local model (minimum image in
periodic boxes, triclinic included), the compiled model's ``energy_and_gradient`` gives per-atom energies
in eV and dE/dr_ij by autograd (in chunks of centres), scattered here to forces. Unit factors come
from :mod:`transip_md.units` and are baked in as float constants.

Minimum image in a reduced triclinic box (a along x, b in the xy plane, |b_x| <= a_x/2, |c_x| <= a_x/2,
|c_y| <= b_y/2): subtracting c round(d_z/c_z), then b round(d_y/b_y), then a round(d_x/a_x) maps a
pair vector to the unique image inside the brick |x| <= a_x/2, |y| <= b_y/2, |z| <= c_z/2. Every
perpendicular width of the cell is at most the brick's extent along that axis, so when 2 x cutoff does
not exceed the smallest perpendicular width, any image closer than the cutoff lies in the brick and is
the one found, and no second image can be within the cutoff. Smaller boxes (several images of one
neighbour inside the cutoff) are refused with an error naming the widths.

The pair search is O(N^2) in memory and time over the ML atoms (half pairs i < j are evaluated, then
mirrored): fine for the thousands of atoms TorchForce is used for on one device.
"""

# ruff: noqa: UP045  (TorchScript compiles these signatures: keep typing.Optional)
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ..model.evaluate import DEFAULT_CHUNK
from ..units import EV_TO_KJ_PER_MOL, NM_TO_ANGSTROM


class TransIPTorchModule(nn.Module):
    """Wrap a loaded compiled TransIP model for OpenMM (see the module docstring for I/O).

    Parameters
    ----------
    model: the TorchScript module of a compiled model (``load_compiled(path).module``).
    species: atomic numbers of the ML atoms, in the order of ``indices``.
    n_particles: number of particles of the OpenMM System (rows of ``positions``).
    indices: System indices of the ML atoms (None: all particles, in order).
    cutoff: the model's cutoff in Å (None: global all-pairs model).
    periodic: whether ``boxvectors`` are used (local models only).
    charge, multiplicity: total charge (e) and spin multiplicity of the ML atoms.
    dtype: dtype the model runs in (its parameters are cast to it).
    """

    def __init__(
        self,
        model: torch.jit.ScriptModule,
        species: list[int],
        n_particles: int,
        indices: Optional[list[int]],
        cutoff: Optional[float],
        periodic: bool,
        charge: int,
        multiplicity: int,
        dtype: torch.dtype,
    ) -> None:
        super().__init__()
        if periodic and cutoff is None:
            raise ValueError("a global (all-pairs) model cannot be periodic")
        self.model = model.to(dtype)
        n = len(species)
        self.n_atoms = n
        self.n_particles = int(n_particles)
        self.use_subset = indices is not None
        idx = list(range(n)) if indices is None else [int(i) for i in indices]
        if len(idx) != n:
            raise ValueError(f"{len(idx)} indices for {n} species")
        self.register_buffer("indices", torch.tensor(idx, dtype=torch.long))
        self.register_buffer("species", torch.tensor(species, dtype=torch.long))
        self.register_buffer("charge", torch.tensor([float(charge)], dtype=torch.float64))
        self.register_buffer("spin", torch.tensor([float(multiplicity)], dtype=torch.float64))
        self.register_buffer("batch", torch.zeros(n, dtype=torch.long))
        iu = torch.triu_indices(n, n, offset=1)
        self.register_buffer("pair_i", iu[0].contiguous())
        self.register_buffer("pair_j", iu[1].contiguous())
        self.is_local = cutoff is not None
        self.periodic = bool(periodic)
        self.cutoff_nm = float(cutoff) / NM_TO_ANGSTROM if cutoff is not None else 0.0
        self.nm_to_angstrom = float(NM_TO_ANGSTROM)
        self.ev_to_kj_per_mol = float(EV_TO_KJ_PER_MOL)
        self.chunk_size = int(DEFAULT_CHUNK)
        self.model_dtype = dtype

    def _minimum_image(self, d: Tensor, box: Tensor) -> Tensor:
        """Reduced-form triclinic minimum image of pair vectors d (P, 3), box rows a, b, c (nm)."""
        a = box[0]
        b = box[1]
        c = box[2]
        volume = torch.abs(torch.dot(a, torch.linalg.cross(b, c)))
        widths = torch.stack(
            [
                volume / torch.linalg.norm(torch.linalg.cross(b, c)),
                volume / torch.linalg.norm(torch.linalg.cross(c, a)),
                volume / torch.linalg.norm(torch.linalg.cross(a, b)),
            ]
        )
        if bool((widths < 2.0 * self.cutoff_nm).any()):
            raise RuntimeError(
                "transip: the periodic box is too small for this model: its smallest perpendicular width "
                + str(float(widths.min()))
                + " nm must be at least twice the cutoff ("
                + str(2.0 * self.cutoff_nm)
                + " nm); use a larger box"
            )
        d = d - torch.round(d[:, 2:3] / c[2]) * c
        d = d - torch.round(d[:, 1:2] / b[1]) * b
        d = d - torch.round(d[:, 0:1] / a[0]) * a
        return d

    def _edges(self, pos: Tensor, box: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """Edge index (2, E) and vectors r_j - r_i (E, 3) in nm, both directions of each pair."""
        d = pos[self.pair_j] - pos[self.pair_i]
        i = self.pair_i
        j = self.pair_j
        if self.is_local:
            if self.periodic:
                if box is None:
                    raise RuntimeError("transip: this force is periodic but OpenMM passed no box vectors")
                d = self._minimum_image(d, box.to(pos.dtype))
            with torch.no_grad():
                keep = (d * d).sum(-1) < self.cutoff_nm * self.cutoff_nm
            d = d[keep]
            i = i[keep]
            j = j[keep]
        edge_index = torch.stack([torch.cat([i, j]), torch.cat([j, i])])
        return edge_index, torch.cat([d, -d])

    def _ml_positions(self, positions: Tensor) -> Tensor:
        """The ML atoms' positions (nm) in the model dtype, detached; checks the particle count."""
        if positions.shape[0] != self.n_particles:
            raise RuntimeError(
                "transip: expected positions of " + str(self.n_particles) + " particles, got " + str(positions.shape[0])
            )
        if self.use_subset:
            positions = positions[self.indices]
        return positions.detach().to(self.model_dtype)

    def energy_and_gradient(self, positions: Tensor, boxvectors: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """Energy (kJ/mol, float64) and its gradient (kJ/mol/nm) for the ML atoms' positions.

        The model's ``energy_and_gradient`` runs local models in chunks of centres (bounded memory, linear
        cost) and returns dE/dr_ij (eV/Å), scattered to positions here.
        """
        pos = self._ml_positions(positions)
        with torch.no_grad():
            edge_index, vec = self._edges(pos, boxvectors)
        energies, g = self.model.energy_and_gradient(
            self.species, edge_index, vec * self.nm_to_angstrom, self.charge, self.spin, self.batch, -1, self.chunk_size
        )
        # dE/dx_nm: r_ij = x_j - x_i, dE/dr in eV/Å -> kJ/mol/nm
        g = g.to(pos.dtype) * (self.ev_to_kj_per_mol * self.nm_to_angstrom)
        grad = torch.zeros_like(pos).index_add(0, edge_index[1], g).index_add(0, edge_index[0], -g)
        return energies.sum() * self.ev_to_kj_per_mol, grad

    def forward(self, positions: Tensor, boxvectors: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        energy, grad = self.energy_and_gradient(positions, boxvectors)
        forces = -grad.to(positions.dtype)
        if self.use_subset:
            full = torch.zeros_like(positions)
            forces = full.index_copy(0, self.indices, forces)
        return energy.to(torch.float64), forces


def build_torch_module(
    model: torch.jit.ScriptModule,
    species: list[int],
    n_particles: int,
    indices: Optional[list[int]],
    cutoff: Optional[float],
    periodic: bool,
    charge: int,
    multiplicity: int,
    dtype: torch.dtype,
) -> torch.jit.ScriptModule:
    """Script a :class:`TransIPTorchModule` (the compiled model becomes its submodule ``model``)."""
    module = TransIPTorchModule(model, species, n_particles, indices, cutoff, periodic, charge, multiplicity, dtype)
    return torch.jit.script(module.eval())
