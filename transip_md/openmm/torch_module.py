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

Verlet list (local models). The module keeps candidate pairs i < j closer than cutoff + skin' (Å in the
constructor, nm inside), built from the positions of one call and reused by later calls while no ML atom
has moved more than 0.49 skin' from those positions and the box vectors are bitwise unchanged (an NPT
barostat's box change, a wrapped atom jumping by a box vector, a new device or dtype: rebuild). Each call
still takes the minimum image of every candidate and keeps those closer than the cutoff, so the edges
(same pairs, same order i < j, same vectors) and hence energies and forces are exactly those of a fresh
build: two atoms that moved at most skin'/2 each changed their distance by at most skin'. The brick
argument above covers distances up to half the smallest width, so in a periodic box the skin is used as
skin' = min(skin, width_min/2 - cutoff) (never below 0); skin = 0 rebuilds on every call. The 2 % margin
below skin'/2 absorbs float32 rounding of positions and distances. The build scans ``block_rows`` rows of
the upper triangle at a time: memory O(block_rows x N + candidate pairs), time O(N^2) per rebuild and
O(candidate pairs) per reuse. A global model's all-pairs list is built on the first call and kept.
The cached list is a function of the cached positions and box only, so a module shared between callers
stays exact; ``n_builds`` and ``n_reuses`` count the calls that rebuilt or reused it (diagnostics).
"""

# ruff: noqa: UP045  (TorchScript compiles these signatures: keep typing.Optional)
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from ..model.engine import forces_from_edge_gradient, require_local
from ..model.evaluate import DEFAULT_CHUNK
from ..units import EV_TO_KJ_PER_MOL, NM_TO_ANGSTROM
from ..validation import COINCIDENT_DISTANCE_A, MAX_COORDINATE_A, symbol

#: Default Verlet skin in Å. The model only sees pairs inside the cutoff, so the skin costs nothing but the
#: per-call distance check of the extra candidates ((1 + skin/cutoff)^3 = 1.7x the pairs at 5 Å) and buys
#: rebuild-free steps: the fastest atoms of liquid water at 300 K (H, ~0.03 Å/fs) cross half of 1 Å in
#: roughly 10-20 fs, i.e. a rebuild every 10-20 steps of 1 fs instead of every step. 1 Å = 0.1 nm is also
#: the Verlet buffer that GROMACS and OpenMM typically use (LAMMPS's metal default, 2 Å, doubles the
#: candidates again for rarer rebuilds).
DEFAULT_SKIN_ANGSTROM = 1.0
#: Rows of the upper triangle scanned at once when the pair list is rebuilt. Smaller blocks were faster on the
#: CPU (cache) and bound the memory; larger ones mean fewer kernel launches on a GPU (timings:
#: bench/results/moved_from_docstrings.md).
DEFAULT_BLOCK_ROWS = 64
#: Reuse while the largest displacement is below this fraction of the (effective) skin (0.5 less 2 %).
REUSE_FRACTION = 0.49


def checked_skin(value: object, name: str = "skin") -> float:
    """``value`` as a Verlet skin in Å (a finite float >= 0); a ValueError naming ``name`` otherwise."""
    try:
        skin = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        skin = math.nan
    if not (math.isfinite(skin) and skin >= 0.0):
        raise ValueError(
            f"{name} must be a finite distance >= 0 Å (0 rebuilds the pair list every step), got {value!r}"
        )
    return skin


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
    skin: Verlet skin in Å (local models; >= 0, 0 rebuilds the pair list on every call); see the module
        docstring and :data:`DEFAULT_SKIN_ANGSTROM` for the default.
    block_rows: rows of the upper triangle scanned at once by a rebuild (memory block_rows x N).
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
        skin: float = DEFAULT_SKIN_ANGSTROM,
        block_rows: int = DEFAULT_BLOCK_ROWS,
    ) -> None:
        super().__init__()
        if periodic:
            require_local(cutoff, "periodic")
        skin = checked_skin(skin)
        if int(block_rows) < 1:
            raise ValueError(f"block_rows must be >= 1, got {block_rows}")
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
        self.symbols = [symbol(int(z)) for z in species]
        self.min_distance_nm = float(COINCIDENT_DISTANCE_A) / NM_TO_ANGSTROM
        self.max_coordinate_nm = float(MAX_COORDINATE_A) / NM_TO_ANGSTROM
        self.min_distance_text = f"{COINCIDENT_DISTANCE_A:g}"
        self.max_coordinate_text = f"{MAX_COORDINATE_A:g}"
        self.register_buffer("charge", torch.tensor([float(charge)], dtype=torch.float64))
        self.register_buffer("spin", torch.tensor([float(multiplicity)], dtype=torch.float64))
        self.register_buffer("batch", torch.zeros(n, dtype=torch.long))
        self.is_local = cutoff is not None
        self.periodic = bool(periodic)
        self.cutoff_nm = float(cutoff) / NM_TO_ANGSTROM if cutoff is not None else 0.0
        self.skin_nm = skin / NM_TO_ANGSTROM
        self.block_rows = int(block_rows)
        self.reuse_fraction = float(REUSE_FRACTION)
        self.nm_to_angstrom = float(NM_TO_ANGSTROM)
        self.ev_to_kj_per_mol = float(EV_TO_KJ_PER_MOL)
        self.chunk_size = int(DEFAULT_CHUNK)
        self.model_dtype = dtype
        # the cached pair list (candidate pairs i < j) and the positions/box it was built from, mutated in forward
        self.register_buffer("pair_i", torch.zeros(0, dtype=torch.long))
        self.register_buffer("pair_j", torch.zeros(0, dtype=torch.long))
        self.register_buffer("list_positions", torch.zeros(0, 3, dtype=dtype))
        self.register_buffer("list_box", torch.zeros(0, 3, dtype=dtype))
        self.list_valid = False
        self.reuse_limit_sq = 0.0  # nm^2: (REUSE_FRACTION x effective skin)^2 of the current list
        self.n_builds = 0
        self.n_reuses = 0

    def _box_widths(self, box: Tensor) -> Tensor:
        """Perpendicular widths (3,) nm of the cell with rows a, b, c; refuses boxes narrower than 2 x cutoff."""
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
        return widths

    def _minimum_image(self, d: Tensor, box: Tensor) -> Tensor:
        """Reduced-form triclinic minimum image of pair vectors d (..., 3), box rows a, b, c (nm)."""
        a = box[0]
        b = box[1]
        c = box[2]
        d = d - torch.round(d[..., 2:3] / c[2]) * c
        d = d - torch.round(d[..., 1:2] / b[1]) * b
        d = d - torch.round(d[..., 0:1] / a[0]) * a
        return d

    def _build_pairs(self, pos: Tensor, box: Optional[Tensor], list_cutoff_nm: float) -> tuple[Tensor, Tensor]:
        """Pairs i < j closer than ``list_cutoff_nm`` (minimum image if ``box``), in row-major order, scanned
        ``block_rows`` rows at a time (memory block_rows x N)."""
        n = pos.shape[0]
        cut2 = list_cutoff_nm * list_cutoff_nm
        firsts: list[Tensor] = []
        seconds: list[Tensor] = []
        for start in range(0, n - 1, self.block_rows):
            stop = min(start + self.block_rows, n - 1)
            # rows start..stop-1 against columns start+1..n-1; keep column > row (the upper triangle)
            d = pos[start + 1 :].unsqueeze(0) - pos[start:stop].unsqueeze(1)
            if box is not None:
                d = self._minimum_image(d, box)
            rows = torch.arange(start, stop, device=pos.device).unsqueeze(1)
            cols = torch.arange(start + 1, n, device=pos.device).unsqueeze(0)
            keep = ((d * d).sum(-1) < cut2) & (cols > rows)
            nz = torch.nonzero(keep)
            firsts.append(nz[:, 0] + start)
            seconds.append(nz[:, 1] + (start + 1))
        if len(firsts) == 0:
            empty = torch.zeros(0, dtype=torch.long, device=pos.device)
            return empty, empty
        return torch.cat(firsts), torch.cat(seconds)

    def _list_is_current(self, pos: Tensor, box: Optional[Tensor]) -> bool:
        """Whether the cached pair list still holds every pair within the cutoff for ``pos``/``box``."""
        if not self.list_valid or self.skin_nm <= 0.0:
            return False
        cached = self.list_positions
        if cached.device != pos.device or cached.dtype != pos.dtype or cached.shape != pos.shape:
            return False
        if box is not None:
            if self.list_box.device != box.device or self.list_box.shape != box.shape:
                return False
            if not torch.equal(self.list_box, box):
                return False
        moved_sq = ((pos - cached) ** 2).sum(-1).max()
        return bool(moved_sq < self.reuse_limit_sq)  # NaN positions compare False: rebuild

    def _update_list(self, pos: Tensor, box: Optional[Tensor]) -> None:
        """Rebuild the cached pair list unless it is still current for ``pos``/``box``."""
        if not self.is_local:
            if self.list_valid and self.pair_i.device == pos.device:
                self.n_reuses += 1
                return
            n = pos.shape[0]
            iu = torch.triu_indices(n, n, 1, device=pos.device)
            self.pair_i = iu[0].contiguous()
            self.pair_j = iu[1].contiguous()
            self.list_valid = True
            self.n_builds += 1
            return
        if self._list_is_current(pos, box):
            self.n_reuses += 1
            return
        skin = self.skin_nm
        if box is not None:
            half_width = 0.5 * float(self._box_widths(box).min())
            skin = max(0.0, min(skin, half_width - self.cutoff_nm))
        pair_i, pair_j = self._build_pairs(pos, box, self.cutoff_nm + skin)
        self.pair_i = pair_i
        self.pair_j = pair_j
        self.list_positions = pos.clone()
        if box is not None:
            self.list_box = box.clone()
        limit = self.reuse_fraction * skin
        self.reuse_limit_sq = limit * limit
        self.list_valid = True
        self.n_builds += 1

    def _edges(self, pos: Tensor, box: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """Edge index (2, E) and vectors r_j - r_i (E, 3) in nm, both directions of each pair."""
        if self.is_local and self.periodic:
            if box is None:
                raise RuntimeError("transip: this force is periodic but OpenMM passed no box vectors")
            box = box.to(pos.dtype)
        else:
            box = None
        self._update_list(pos, box)
        i = self.pair_i
        j = self.pair_j
        d = pos[j] - pos[i]
        if self.is_local:
            if box is not None:
                d = self._minimum_image(d, box)
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

    def _check_coordinates(self, pos: Tensor) -> None:
        """The rules of :mod:`transip_md.validation`: finite, and (non-periodic) within MAX_COORDINATE_A."""
        finite = torch.isfinite(pos).all(dim=1)
        if not bool(finite.all()):
            k = int(torch.nonzero(~finite)[0, 0])
            raise RuntimeError(
                "transip: atom " + str(int(self.indices[k])) + " (" + self.symbols[k] + "): position is not finite"
            )
        if not self.periodic and pos.shape[0] > 0:
            far = pos.abs().max(dim=1).values > self.max_coordinate_nm
            if bool(far.any()):
                k = int(torch.nonzero(far)[0, 0])
                raise RuntimeError(
                    "transip: atom " + str(int(self.indices[k])) + " (" + self.symbols[k] + "): position is further "
                    "than " + self.max_coordinate_text + " Å from the origin "
                    "(non-periodic limit)"
                )

    def _check_overlaps(self, edge_index: Tensor, vec: Tensor) -> None:
        """No two ML atoms closer than COINCIDENT_DISTANCE_A (edge vectors in nm; validation module docstring)."""
        if vec.shape[0] == 0:
            return
        lengths = torch.linalg.norm(vec, dim=1)
        k = int(torch.argmin(lengths))
        if float(lengths[k]) < self.min_distance_nm:
            i = int(edge_index[0, k])
            j = int(edge_index[1, k])
            raise RuntimeError(
                "transip: atoms "
                + str(int(self.indices[i]))
                + " ("
                + self.symbols[i]
                + ") and "
                + str(int(self.indices[j]))
                + " ("
                + self.symbols[j]
                + ") overlap: distance "
                + str(float(lengths[k]) * self.nm_to_angstrom)
                + " Å < "
                + self.min_distance_text
                + " Å"
            )

    def energy_and_gradient(self, positions: Tensor, boxvectors: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """Energy (kJ/mol, float64) and its gradient (kJ/mol/nm) for the ML atoms' positions.

        The model's ``energy_and_gradient`` runs local models in chunks of centres (bounded memory, linear
        cost) and returns dE/dr_ij (eV/Å), scattered to positions here (:mod:`transip_md.model.engine`).
        """
        pos = self._ml_positions(positions)
        self._check_coordinates(pos)
        with torch.no_grad():
            edge_index, vec = self._edges(pos, boxvectors)
        self._check_overlaps(edge_index, vec)
        energies, g = self.model.energy_and_gradient(
            self.species, edge_index, vec * self.nm_to_angstrom, self.charge, self.spin, self.batch, -1, self.chunk_size
        )
        # dE/dx_nm = -F: r_ij = x_j - x_i, dE/dr in eV/Å -> kJ/mol/nm
        g = g.to(pos.dtype) * (self.ev_to_kj_per_mol * self.nm_to_angstrom)
        grad = -forces_from_edge_gradient(g, edge_index, pos.shape[0])
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
    skin: float = DEFAULT_SKIN_ANGSTROM,
    block_rows: int = DEFAULT_BLOCK_ROWS,
) -> torch.jit.ScriptModule:
    """Script a :class:`TransIPTorchModule` (the compiled model becomes its submodule ``model``); ``skin`` in Å."""
    module = TransIPTorchModule(
        model, species, n_particles, indices, cutoff, periodic, charge, multiplicity, dtype, skin, block_rows
    )
    return torch.jit.script(module.eval())
