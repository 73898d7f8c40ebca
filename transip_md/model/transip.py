"""The TransIP network: a plain (non-equivariant) Transformer over atoms, energies in eV, lengths in Å.

Engine-facing contract (docs/model.md, "The compiled-file contract"): ``forward(species, edge_index, edge_vec,
charge, spin, batch, n_centers, natoms)`` takes atomic numbers (N,), edges i -> j as ``edge_index`` (2, E) with
``edge_vec`` = r_j - r_i in Å (E, 3), the total charge and spin multiplicity of each structure (B,),
the structure index of each atom (N,), the number of leading atoms whose energies are wanted
(-1: all) and the total number of atoms of each structure (B,) (None: counted from ``batch[:n_centers]``,
right wherever no ghost atoms are passed; LAMMPS passes its global atom count). It returns per-atom energies
in eV as float64. Forces are -dE/dx through ``edge_vec``.

Per-atom energy = learned head(features) + reference energy of the element + half the ZBL-screened nuclear
repulsion of each of its edges + E_state(Q, M) / N (model/priors.py). Charge and spin condition every token
through (N_REF / N) (Q, M - 1): size-consistent (the per-atom signal of one extra electron shrinks as 1/N), and
exactly independent of N for the neutral singlet, so neutral singlet runs need no global count at all.

Two modes of the same blocks:
* global (cutoff None): one token sequence per structure, every atom attends every other atom.
  Needs all-pairs edges; token positions are the first atom's edge vectors, centred on the structure's centroid.
* local (finite cutoff): strictly local. Atom i's energy comes from the blocks applied to the tokens
  {i} + {j : r_ij < rc} with positions relative to i (r_ij); every relative vector in the
  neighbourhood is r_ik - r_ij. Attention to a neighbour token is weighted by the envelope of its
  distance to the centre, so energies are smooth when atoms cross rc.
"""

from __future__ import annotations

import math
from typing import Optional  # noqa: UP035 - TorchScript needs typing.Optional

import torch
from torch import Tensor, nn

from .config import TransIPConfig
from .layers import Rotary3D, SplineRadialBias, TransformerBlock, log_envelope, pair_distances, safe_norm
from .priors import NuclearRepulsion, StateEnergy
from .spread import ChargeSpread

#: Charge/spin conditioning features are (N_REF / N) (Q, M - 1) for a structure of N atoms.
N_REF = 10.0
#: Covalent-radius sum (Å) at which a covalent-scaled distance equals the distance: the C-C pair (2 x 0.76 Å).
REFERENCE_RADIUS_SUM = 1.52


def _stretched_spline(n_knots: int, r_max: float, stretch: float) -> tuple[int, float]:
    """(knots, range) of a uniform spline that reaches at least ``stretch`` x ``r_max`` at exactly the spacing of
    ``n_knots`` knots over ``r_max`` (so the first ``n_knots`` knots sit where the unstretched spline's do)."""
    knots = int(math.ceil((n_knots - 1) * stretch)) + 1
    return knots, r_max * (knots - 1) / (n_knots - 1)


class TransIP(nn.Module):
    """TransIP potential. Build with a :class:`TransIPConfig`; see the module docstring for I/O."""

    def __init__(self, config: TransIPConfig) -> None:
        super().__init__()
        self.config = config
        n_el = len(config.elements)
        self.is_local = config.cutoff is not None
        self.cutoff = float(config.cutoff) if config.cutoff is not None else 0.0
        self.envelope_power = int(config.envelope_power)
        self.n_layers = int(config.n_layers)
        self.n_heads = int(config.n_heads)
        self.use_charge_spin = bool(config.use_charge_spin)
        self.use_repulsion = float(config.repulsion_range) > 0.0
        self.repulsion = NuclearRepulsion(float(config.repulsion_range) if self.use_repulsion else 1.0)
        self.state_energy = StateEnergy()
        self.n_ref = N_REF
        #: Local sequences are padded to a multiple of this length (1: no padding). Padding tokens carry zero
        #: attention weight, so results do not change; ``torch.compile`` uses 8 to limit distinct shapes.
        self.sequence_multiple = 1
        #: Local mode: centres are encoded in at most this many groups of similar neighbour count (1: one padded
        #: batch), each group costing about ``group_cost_pairs`` pair terms more (:meth:`_length_groups`).
        self.max_length_groups = 4
        self.group_cost_pairs = 20000
        z_to_index = torch.full((119,), -1, dtype=torch.long)
        for idx, z in enumerate(config.elements):
            z_to_index[z] = idx
        self.register_buffer("z_to_index", z_to_index)
        self.register_buffer("elements", torch.tensor(config.elements, dtype=torch.long))
        self.embed = nn.Embedding(n_el, config.d_model)
        self.condition = nn.Sequential(
            nn.Linear(2, config.d_model), nn.SiLU(), nn.Linear(config.d_model, config.d_model)
        )
        self.rope = Rotary3D(config.n_rope_freqs, config.rope_min_wavelength, config.rope_max_wavelength)
        # Covalent-scaled radial inputs (config.covalent_scaled_radial) read the radii from the repulsion prior's
        # table (the buffer every model file already holds). A scaled distance reaches up to ``stretch`` times the
        # plain one (the smallest radius sum, H-H), so both splines get that much more range and knots: the same
        # knot spacing as the plain splines.
        self.covalent_scaled = bool(config.covalent_scaled_radial)
        self.reference_radius_sum = REFERENCE_RADIUS_SUM
        smallest_radius = float(self.repulsion.covalent_radii[self.elements].min())
        stretch = max(REFERENCE_RADIUS_SUM / (2.0 * smallest_radius), 1.0) if self.covalent_scaled else 1.0
        # Learned radii (config.learned_radii): log of each element's radius (Å), starting at the table's. Learned
        # radii smaller than the table's smallest read beyond the splines' range, where they are constant.
        if config.learned_radii:
            log_radii = torch.log(self.repulsion.covalent_radii[self.elements].double())
            self.log_radii = nn.Parameter(log_radii if config.dtype == "float64" else log_radii.float())
        else:
            self.register_parameter("log_radii", None)
        # One radial bias per head, computed once per pair and shared by all blocks (pairs dominate the cost).
        bias_knots, bias_range = _stretched_spline(config.n_rbf, config.radial_max, stretch)
        self.radial_bias = SplineRadialBias(bias_knots, bias_range, config.n_heads)
        # Per-token embedding of the distance to the centre (local) or centroid (global): radial information in
        # the values, at per-token (not per-pair) cost.
        self.use_token_radial = int(config.n_token_radial) > 0
        token_range = self.cutoff if self.is_local else 0.5 * config.radial_max
        self.token_radial = SplineRadialBias(
            *_stretched_spline(max(int(config.n_token_radial), 4), token_range, stretch), config.d_model
        )
        # Learned charge/spin spread (config.learned_charge_spread, model/spread.py): absent otherwise, so models
        # without it keep their parameter names.
        self.learned_spread = bool(config.learned_charge_spread)
        if self.learned_spread:
            self.spread = ChargeSpread(n_el, self.cutoff)
        else:
            self.spread = None
        self.blocks = nn.ModuleList(
            [
                TransformerBlock(config.d_model, config.n_heads, config.mlp_ratio, config.value_rotary)
                for _ in range(config.n_layers)
            ]
        )
        self.norm_out = nn.LayerNorm(config.d_model)
        self.head = nn.Sequential(nn.Linear(config.d_model, config.d_model), nn.SiLU(), nn.Linear(config.d_model, 1))
        # Energy normalisation (eV) and per-element reference energies (eV), float64.
        self.register_buffer("energy_scale", torch.ones((), dtype=torch.float64))
        self.register_buffer("energy_shift", torch.zeros((), dtype=torch.float64))
        self.register_buffer("reference_energies", torch.zeros(n_el, dtype=torch.float64))
        if config.dtype == "float64":
            self.double()

    @torch.jit.unused
    def set_attention_kernel(self, kernel: str) -> None:
        """'math' (explicit, supports double backward: training) or 'sdpa' (fused kernels: inference)."""
        if kernel not in ("math", "sdpa"):
            raise ValueError(f"attention kernel must be 'math' or 'sdpa', got {kernel!r}")
        for block in self.blocks:
            block.use_sdpa = kernel == "sdpa"

    # ------------------------------------------------------------------ inputs -> token sequences
    def _element_index(self, species: Tensor) -> Tensor:
        if species.numel() > 0:
            if bool((species < 0).any()) or bool((species > 118).any()):
                raise RuntimeError("transip: atomic numbers must lie in 1..118")
        idx = self.z_to_index[species]
        if bool((idx < 0).any()):
            bad = species[idx < 0][0]
            raise RuntimeError(
                "transip: element with atomic number " + str(int(bad)) + " is not in this model's elements"
            )
        return idx

    def _check_local_sources(self, src: Tensor, n_centers: int) -> None:
        """Local mode: every edge must start at one of the first n_centers atoms (ghosts only as targets)."""
        if src.shape[0] > 0 and bool((src >= n_centers).any()):
            raise RuntimeError("transip: local-mode edges must start at one of the n_centers atoms")

    def _local_sequences(
        self, centre_elem: Tensor, src: Tensor, neighbour_elem: Tensor, edge_vec: Tensor, n_centers: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Neighbourhood sequences of ``n_centers`` centres: token 0 is the centre, then its neighbours (padded).

        ``src`` (E,) numbers each edge's centre 0..n_centers-1, ``neighbour_elem`` (E,) is the element index of
        the edge's other end and ``edge_vec`` (E, 3) the edge vector in Å. Neighbours keep their edge order.
        """
        n_edges = src.shape[0]
        counts = torch.bincount(src, minlength=n_centers)
        max_nb = int(counts.max()) if n_edges > 0 else 0
        length = max_nb + 1
        if self.sequence_multiple > 1:
            length = (length + self.sequence_multiple - 1) // self.sequence_multiple * self.sequence_multiple
        order = torch.argsort(src, stable=True)
        src_s = src[order]
        offsets = torch.cumsum(counts, 0) - counts
        slot = torch.arange(n_edges, device=src.device) - offsets[src_s] + 1
        vec_s = edge_vec[order]
        pos = torch.zeros(n_centers, length, 3, dtype=edge_vec.dtype, device=edge_vec.device)
        pos = pos.index_put((src_s, slot), vec_s)
        tok = torch.zeros(n_centers, length, dtype=torch.long, device=src.device)
        tok[:, 0] = centre_elem
        tok = tok.index_put((src_s, slot), neighbour_elem[order])
        logw = torch.full((n_centers, length), -math.inf, dtype=edge_vec.dtype, device=edge_vec.device)
        logw[:, 0] = 0.0
        logw = logw.index_put((src_s, slot), log_envelope(safe_norm(vec_s), self.cutoff, self.envelope_power))
        return tok, pos, logw

    def _length_groups(self, sorted_counts: list[int]) -> list[int]:
        """Group bounds [0, b_1, ..., n] over centres sorted by neighbour count (equal-sized groups).

        The number of groups G (1..``max_length_groups``) minimises the padded pair terms, sum over groups of
        size x (longest neighbourhood + 1)^2, plus G x ``group_cost_pairs``: each group is one more pass of the
        blocks, whose fixed cost (operator dispatch) is worth about that many pair terms.
        """
        n = len(sorted_counts)
        best_bounds = [0, n]
        best_cost = math.inf
        for n_groups in range(1, min(self.max_length_groups, n) + 1):
            bounds = [g * n // n_groups for g in range(n_groups + 1)]
            cost = float(n_groups * self.group_cost_pairs)
            for g in range(n_groups):
                lo = bounds[g]
                hi = bounds[g + 1]
                length = sorted_counts[hi - 1] + 1
                cost += float((hi - lo) * length * length)
            if cost < best_cost:
                best_cost = cost
                best_bounds = bounds
        return best_bounds

    def _rank_edges(self, src: Tensor, perm: Tensor, n_centers: int) -> tuple[Tensor, Tensor]:
        """For centres in the order ``perm`` (rank -> centre): each edge's centre rank, and the edges ordered by it
        (stable: a centre's edges keep their input order)."""
        rank = torch.empty_like(perm)
        rank[perm] = torch.arange(n_centers, device=src.device)
        edge_rank = rank[src]
        return edge_rank, torch.argsort(edge_rank, stable=True)

    def _local_groups(
        self, elem: Tensor, edge_index: Tensor, edge_vec: Tensor, cond: Tensor, n_centers: int
    ) -> list[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]]:
        """(centres, tokens, positions, log-weights, conditioning) of each length group of a local model's centres.

        Centres are sorted by neighbour count and split into groups (:meth:`_length_groups`), each padded to its
        own longest neighbourhood rather than the whole input's: a training batch of 128 atoms of small molecules
        has 2.5x more pair terms padded to one length than it uses, 1.7x in two groups, 1.45x in three. Padding
        tokens carry zero attention weight, so every centre's numbers are those of its neighbourhood alone,
        whatever the grouping. One group keeps the input order (``centres`` = 0..n_centers-1).
        """
        src = edge_index[0]
        dst = edge_index[1]
        self._check_local_sources(src, n_centers)
        counts = torch.bincount(src, minlength=n_centers)
        perm = torch.argsort(counts, stable=True)
        sorted_counts: list[int] = counts[perm].tolist()
        bounds = self._length_groups(sorted_counts)
        if len(bounds) == 2:
            tok, pos, logw = self._local_sequences(elem[:n_centers], src, elem[dst], edge_vec, n_centers)
            return [(torch.arange(n_centers, device=src.device), tok, pos, logw, cond)]
        edge_rank, order = self._rank_edges(src, perm, n_centers)
        edge_bounds: list[int] = torch.searchsorted(
            edge_rank[order], torch.tensor(bounds, dtype=edge_rank.dtype, device=src.device)
        ).tolist()
        groups: list[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]] = []
        for g in range(len(bounds) - 1):
            lo = bounds[g]
            hi = bounds[g + 1]
            sel = order[edge_bounds[g] : edge_bounds[g + 1]]
            centres = perm[lo:hi]
            tok, pos, logw = self._local_sequences(
                elem[centres], edge_rank[sel] - lo, elem[dst[sel]], edge_vec[sel], hi - lo
            )
            groups.append((centres, tok, pos, logw, cond[centres]))
        return groups

    def _local_features(
        self, elem: Tensor, edge_index: Tensor, edge_vec: Tensor, cond: Tensor, n_centers: int
    ) -> Tensor:
        """Centre features (n_centers, d) of a local model; ``cond`` (n_centers, d) is each centre's conditioning."""
        groups = self._local_groups(elem, edge_index, edge_vec, cond, n_centers)
        if len(groups) == 1:
            _, tok, pos, logw, cond_g = groups[0]
            return self._encode(tok, pos, logw, cond_g, True)[:, 0]
        parts: list[Tensor] = []
        order: list[Tensor] = []
        for centres, tok, pos, logw, cond_g in groups:
            parts.append(self._encode(tok, pos, logw, cond_g, True)[:, 0])
            order.append(centres)
        return self._rows_by_centre(parts, order)

    def _rows_by_centre(self, parts: list[Tensor], order: list[Tensor]) -> Tensor:
        """The length groups' rows (one tensor per group) put back in centre order: the row of centre c at c."""
        rows = torch.cat(parts)
        return torch.zeros_like(rows).index_copy(0, torch.cat(order), rows)

    def _inputs(
        self,
        species: Tensor,
        edge_vec: Tensor,
        charge: Tensor,
        spin: Tensor,
        batch: Tensor,
        n_centers: int,
        natoms: Optional[Tensor],  # noqa: UP045 - TorchScript
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Edge vectors (Å) in the model dtype, element indices and each structure's conditioning (B, d)."""
        dtype = self.embed.weight.dtype
        cond = self._condition(charge, spin, self._natoms(batch, n_centers, charge.shape[0], natoms), dtype)
        return edge_vec.to(dtype), self._element_index(species), cond

    @torch.jit.unused
    def direct_force_outputs(
        self,
        force_head: nn.Module,
        species: Tensor,
        edge_index: Tensor,
        edge_vec: Tensor,
        charge: Tensor,
        spin: Tensor,
        batch: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Training only (direct-force pretraining, docs/training.md), local models, every atom a centre.

        Returns the learned per-atom energies (N,) in eV float64 (``forward`` without the priors, same numbers),
        direct forces (N, 3) in eV/Å float64 and the centre features (N, d). The direct force on centre i is
        ``energy_scale * sum_j force_head(h_j) r_ij`` over the tokens j of i's own neighbourhood (h_j: token j's
        final features there, r_ij its edge vector in Å; the centre and padding tokens sit at r = 0). No gradient
        through the edge vectors is needed, so a training step skips the double backward. Not in the model file.
        """
        if not self.is_local:
            raise RuntimeError("transip: direct forces need a local model (a finite cutoff)")
        n_atoms = species.shape[0]
        edge_vec, elem, cond = self._inputs(species, edge_vec, charge, spin, batch, n_atoms, None)
        feature_parts: list[Tensor] = []
        force_parts: list[Tensor] = []
        order: list[Tensor] = []
        cond_c = self._centre_conditioning(cond, elem, edge_index, edge_vec, charge, spin, batch, n_atoms, None, None)
        for centres, tok, pos, logw, cond_g in self._local_groups(elem, edge_index, edge_vec, cond_c, n_atoms):
            h = self._encode(tok, pos, logw, cond_g, False)  # (S, L, d)
            feature_parts.append(h[:, 0])
            force_parts.append((force_head(h) * pos).sum(1))  # head (S, L, 1) times r (S, L, 3), over tokens
            order.append(centres)
        features = self._rows_by_centre(feature_parts, order)
        forces = self._rows_by_centre(force_parts, order).to(torch.float64) * self.energy_scale.to(torch.float64)
        return self.energies_from_features(features, species), forces, features

    def _global_sequences(
        self, elem: Tensor, edge_index: Tensor, edge_vec: Tensor, batch: Tensor, n_struct: int
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One sequence per structure; positions from the first atom's edges, centred."""
        n_atoms = elem.shape[0]
        if n_atoms > 1 and bool((batch[1:] < batch[:-1]).any()):
            raise RuntimeError("transip: atoms must be ordered by structure (batch must be sorted)")
        counts = torch.bincount(batch, minlength=n_struct)
        first = torch.cumsum(counts, 0) - counts
        local = torch.arange(n_atoms, device=batch.device) - first[batch]
        src = edge_index[0]
        dst = edge_index[1]
        from_first = src == first[batch[src]]
        if int(from_first.sum()) != n_atoms - n_struct:
            raise RuntimeError(
                "transip: a global-mode (all-pairs) model needs every pair i != j of each structure as an edge"
            )
        atom_pos = torch.zeros(n_atoms, 3, dtype=edge_vec.dtype, device=edge_vec.device)
        atom_pos = atom_pos.index_add(0, dst[from_first], edge_vec[from_first])
        # centre each structure (translation invariant; keeps |p| small for float32 distances)
        centroid = torch.zeros(n_struct, 3, dtype=edge_vec.dtype, device=edge_vec.device).index_add(0, batch, atom_pos)
        atom_pos = atom_pos - (centroid / counts.unsqueeze(1).to(edge_vec.dtype))[batch]
        length = int(counts.max())
        pos = torch.zeros(n_struct, length, 3, dtype=edge_vec.dtype, device=edge_vec.device)
        pos = pos.index_put((batch, local), atom_pos)
        tok = torch.zeros(n_struct, length, dtype=torch.long, device=batch.device)
        tok = tok.index_put((batch, local), elem)
        logw = torch.full((n_struct, length), -math.inf, dtype=edge_vec.dtype, device=edge_vec.device)
        logw = logw.index_put((batch, local), torch.zeros(n_atoms, dtype=edge_vec.dtype, device=edge_vec.device))
        return tok, pos, logw, local

    # ------------------------------------------------------------------ the Transformer
    def _encode(self, tok: Tensor, pos: Tensor, logw: Tensor, cond: Tensor, centre_only: bool) -> Tensor:
        """Token features (S, L, d) from element indices, positions (Å), key log-weights, conditioning.

        With ``centre_only`` the last block is evaluated for token 0 only and (S, 1, d) is returned.
        """
        s, length = tok.shape
        h = self.embed(tok) + cond.unsqueeze(1)
        token_dist = safe_norm(pos)
        dist = pair_distances(pos)
        if self.covalent_scaled:
            # local mode: token 0 is the centre; r / (R_a + R_b) x REFERENCE_RADIUS_SUM, Å for a C-C pair
            log_radii = self.log_radii
            if log_radii is not None:
                element_radii = torch.exp(log_radii)  # learned (config.learned_radii)
            else:
                element_radii = self.repulsion.covalent_radii[self.elements]
            radius = element_radii[tok].to(pos.dtype) / self.reference_radius_sum  # (S, L)
            token_dist = token_dist / (radius[:, :1] + radius)
            dist = dist / (radius.unsqueeze(1) + radius.unsqueeze(2))
        if self.use_token_radial:
            h = h + self.token_radial(token_dist)
        bias = self.radial_bias(dist).permute(0, 3, 1, 2)  # (S, H, L, L)
        bias = bias + logw.view(s, 1, 1, length)  # key weights: envelope (local) and padding mask
        cos, sin = self.rope(pos)
        cos = cos.unsqueeze(1)
        sin = sin.unsqueeze(1)
        n_blocks = len(self.blocks)
        for index, block in enumerate(self.blocks):
            if centre_only and index == n_blocks - 1:
                h = block.forward_first_token(h, bias, cos, sin)
            else:
                h = block(h, bias, cos, sin)
        return self.norm_out(h)

    def _condition(self, charge: Tensor, spin: Tensor, natoms: Tensor, dtype: torch.dtype) -> Tensor:
        """Token conditioning (B, d) from (N_REF / N) (Q, M - 1): size-consistent, zero input for (0, 1)."""
        per_atom = (self.n_ref / natoms.to(dtype)).unsqueeze(-1)
        x = torch.stack([charge.to(dtype), spin.to(dtype) - 1.0], dim=-1) * per_atom
        if not self.use_charge_spin:
            x = torch.zeros_like(x)
        return self.condition(x)

    def _centre_conditioning(
        self,
        cond: Tensor,
        elem: Tensor,
        edge_index: Tensor,
        edge_vec: Tensor,
        charge: Tensor,
        spin: Tensor,
        batch: Tensor,
        n_centers: int,
        natoms: Optional[Tensor],  # noqa: UP045 - TorchScript
        spread_total: Optional[Tensor],  # noqa: UP045 - TorchScript
    ) -> Tensor:
        """Conditioning of each centre (n_centers, d): its structure's (even spread) or, with a learned spread,
        condition(N_REF (w_i / W) (Q, M - 1)) with W = ``spread_total`` or, when None, summed over the centres."""
        centre_batch = batch[:n_centers]
        spread = self.spread
        if spread is None or self._neutral_singlets(charge, spin):
            return cond[centre_batch]  # the neutral singlet's input is zero, however it is spread
        w = spread(elem, edge_index, edge_vec, n_centers)
        if spread_total is None:
            self._require_whole_structures(centre_batch, charge.shape[0], natoms)
            total = torch.zeros(charge.shape[0], dtype=torch.float64, device=w.device)
            total = total.index_add(0, centre_batch, w.to(torch.float64))
        else:
            total = spread_total.to(torch.float64)
        fraction = (w.to(torch.float64) / total[centre_batch]).to(w.dtype)
        x = torch.stack([charge.to(w.dtype), spin.to(w.dtype) - 1.0], dim=-1)[centre_batch]
        return self.condition(x * (self.n_ref * fraction).unsqueeze(-1))

    def _neutral_singlets(self, charge: Tensor, spin: Tensor) -> bool:
        """Whether every structure is a neutral singlet (nothing to spread: a zero conditioning input)."""
        return bool((charge == 0).all()) and bool((spin == 1).all())

    def _require_whole_structures(
        self,
        centre_batch: Tensor,
        n_struct: int,
        natoms: Optional[Tensor],  # noqa: UP045 - TorchScript
    ) -> None:
        """A learned spread summed over the centres needs every atom of each structure among them."""
        if natoms is None:
            return
        counted = self._natoms(centre_batch, centre_batch.shape[0], n_struct, None)
        if bool((counted != natoms.to(torch.float64)).any()):
            raise RuntimeError(
                "transip: a learned-charge-spread model given only part of a structure's atoms as centres needs "
                "spread_total, the structure's sum of spread weights (energy_gradients_given_spread; docs/model.md)"
            )

    @torch.jit.export
    def charge_spread_sums(
        self, species: Tensor, edge_index: Tensor, edge_vec: Tensor, batch: Tensor, n_struct: int, n_centers: int = -1
    ) -> Tensor:
        """Sum of the spread weights (n_struct,) float64 over the first n_centers atoms of each structure (for
        an engine that splits structures: sum the pieces' sums, pass the total as ``spread_total``). A model
        without a learned spread returns the centre counts (its weights are 1)."""
        if n_centers < 0:
            n_centers = species.shape[0]
        spread = self.spread
        centre_batch = batch[:n_centers]
        out = torch.zeros(n_struct, dtype=torch.float64, device=edge_vec.device)
        if spread is None:
            return out.index_add(0, centre_batch, torch.ones(n_centers, dtype=torch.float64, device=out.device))
        w = spread(self._element_index(species), edge_index, edge_vec, n_centers)
        return out.index_add(0, centre_batch, w.to(torch.float64))

    @torch.jit.export
    def charge_spread_sum_gradient(
        self,
        species: Tensor,
        edge_index: Tensor,
        edge_vec: Tensor,
        batch: Tensor,
        weight_grad: Tensor,
        n_centers: int = -1,
    ) -> Tensor:
        """d/d(edge_vec) (E, 3) in eV/Å of sum_b weight_grad[b] W_b, W_b this call's sum of the spread weights
        of structure b and weight_grad[b] = dE/dW_b in eV (summed over every piece of the structure): the part of
        the force that flows through W. Zeros for a model without a learned spread."""
        if n_centers < 0:
            n_centers = species.shape[0]
        if self.spread is None:
            return torch.zeros_like(edge_vec)
        vec = edge_vec.detach().requires_grad_(True)
        sums = self.charge_spread_sums(species, edge_index, vec, batch, weight_grad.shape[0], n_centers)
        grads = torch.autograd.grad([(sums * weight_grad.to(torch.float64)).sum()], [vec], allow_unused=True)
        g: Optional[Tensor] = grads[0]  # noqa: UP045 - TorchScript
        if g is None:
            g = torch.zeros_like(vec)
        return g

    def _natoms(self, batch: Tensor, n_centers: int, n_struct: int, natoms: Optional[Tensor]) -> Tensor:  # noqa: UP045
        """Total atoms per structure (B,) float64: as given, or counted from the first n_centers atoms."""
        if natoms is None:
            return torch.bincount(batch[:n_centers], minlength=n_struct).to(torch.float64)
        if natoms.shape[0] != n_struct or (n_struct > 0 and bool((natoms < 1).any())):
            raise RuntimeError("transip: natoms must hold one positive atom count per structure")
        return natoms.to(torch.float64)

    @torch.jit.export
    def prior_energies(
        self,
        species: Tensor,
        edge_index: Tensor,
        edge_vec: Tensor,
        charge: Tensor,
        spin: Tensor,
        batch: Tensor,
        n_centers: int = -1,
        natoms: Optional[Tensor] = None,  # noqa: UP045 - TorchScript
    ) -> Tensor:
        """Per-atom prior energies (n_centers,) in eV float64: nuclear repulsion + E_state(Q, M) / N."""
        if n_centers < 0:
            n_centers = species.shape[0]
        n_atoms = self._natoms(batch, n_centers, charge.shape[0], natoms)
        centre_batch = batch[:n_centers]
        state = self.state_energy(charge, spin)
        if not self.use_charge_spin:
            state = torch.zeros_like(state)
        out = (state / n_atoms)[centre_batch]
        if self.use_repulsion:
            out = out + self.repulsion(species, edge_index, safe_norm(edge_vec), n_centers)
        return out

    @torch.jit.export
    def atom_features(
        self,
        species: Tensor,
        edge_index: Tensor,
        edge_vec: Tensor,
        charge: Tensor,
        spin: Tensor,
        batch: Tensor,
        n_centers: int = -1,
        natoms: Optional[Tensor] = None,  # noqa: UP045 - TorchScript
        spread_total: Optional[Tensor] = None,  # noqa: UP045 - TorchScript
    ) -> Tensor:
        """Final per-atom embeddings (n_centers, d_model) in the model dtype."""
        n_atoms = species.shape[0]
        if n_centers < 0:
            n_centers = n_atoms
        edge_vec, elem, cond = self._inputs(species, edge_vec, charge, spin, batch, n_centers, natoms)
        if self.is_local:
            cond_c = self._centre_conditioning(
                cond, elem, edge_index, edge_vec, charge, spin, batch, n_centers, natoms, spread_total
            )
            return self._local_features(elem, edge_index, edge_vec, cond_c, n_centers)
        if n_centers != n_atoms:
            raise RuntimeError("transip: a global-mode model computes every atom (n_centers must be -1 or N)")
        tok, pos, logw, local = self._global_sequences(elem, edge_index, edge_vec, batch, charge.shape[0])
        h = self._encode(tok, pos, logw, cond, False)
        return h[batch, local]

    @torch.jit.export
    def energies_from_features(self, features: Tensor, species: Tensor) -> Tensor:
        """Per-atom energies in eV (float64) from atom features and atomic numbers of those atoms."""
        elem = self.z_to_index[species]
        raw = self.head(features).squeeze(-1).to(torch.float64)
        scale = self.energy_scale.to(torch.float64)
        shift = self.energy_shift.to(torch.float64)
        return raw * scale + shift + self.reference_energies.to(torch.float64)[elem]

    def forward(
        self,
        species: Tensor,
        edge_index: Tensor,
        edge_vec: Tensor,
        charge: Tensor,
        spin: Tensor,
        batch: Tensor,
        n_centers: int = -1,
        natoms: Optional[Tensor] = None,  # noqa: UP045 - TorchScript
        spread_total: Optional[Tensor] = None,  # noqa: UP045 - TorchScript
    ) -> Tensor:
        """Per-atom energies (eV, float64) of the first n_centers atoms (-1: all). ``spread_total`` (B,): see
        :meth:`charge_spread_sums` (learned-spread models given part of a structure only)."""
        features = self.atom_features(
            species, edge_index, edge_vec, charge, spin, batch, n_centers, natoms, spread_total
        )
        learned = self.energies_from_features(features, species[: features.shape[0]])
        return learned + self.prior_energies(
            species, edge_index, edge_vec, charge, spin, batch, features.shape[0], natoms
        )

    @torch.jit.export
    def energy_and_gradient(
        self,
        species: Tensor,
        edge_index: Tensor,
        edge_vec: Tensor,
        charge: Tensor,
        spin: Tensor,
        batch: Tensor,
        n_centers: int = -1,
        chunk_size: int = 0,
        natoms: Optional[Tensor] = None,  # noqa: UP045 - TorchScript
    ) -> tuple[Tensor, Tensor]:
        """Per-atom energies (n_centers,) in eV (float64) and dE/d(edge_vec) (E, 3) in eV/Å, for inference.

        A local model is evaluated ``chunk_size`` centres at a time (0: all at once). Strict locality makes
        this exact (each centre's energy uses only its own edges) and bounds the memory and working set,
        so the cost stays linear in atoms. Centres are taken in order of neighbour count, so a chunk's
        padded length is close to each of its centres' own (padding in a 1,029-atom water box: 26 % extra
        pair terms for chunks by index, 3.5 % sorted). The engines call this method; training calls ``forward``.
        """
        n_atoms = species.shape[0]
        if n_centers < 0:
            n_centers = n_atoms
        totals = self._natoms(batch, n_centers, charge.shape[0], natoms)
        if not self.is_local or chunk_size <= 0 or n_centers <= chunk_size:
            e, g, _ = self._energies_and_edge_grad(
                species, edge_index, edge_vec, charge, spin, batch, n_centers, totals, None
            )
            return e, g
        spread_total: Optional[Tensor] = None  # noqa: UP045 - TorchScript
        if self.spread is not None and not self._neutral_singlets(charge, spin):
            # W over every centre first (the chunks share it), which needs every atom of each structure
            self._require_whole_structures(batch[:n_centers], charge.shape[0], natoms)
            spread_total = self.charge_spread_sums(species, edge_index, edge_vec, batch, charge.shape[0], n_centers)
        energies, grad, weight_grad = self.energy_gradients_given_spread(
            species, edge_index, edge_vec, charge, spin, batch, n_centers, chunk_size, natoms, spread_total
        )
        if spread_total is not None:
            grad = grad + self.charge_spread_sum_gradient(species, edge_index, edge_vec, batch, weight_grad, n_centers)
        return energies, grad

    @torch.jit.export
    def energy_gradients_given_spread(
        self,
        species: Tensor,
        edge_index: Tensor,
        edge_vec: Tensor,
        charge: Tensor,
        spin: Tensor,
        batch: Tensor,
        n_centers: int = -1,
        chunk_size: int = 0,
        natoms: Optional[Tensor] = None,  # noqa: UP045 - TorchScript
        spread_total: Optional[Tensor] = None,  # noqa: UP045 - TorchScript
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Like :meth:`energy_and_gradient` with the structures' spread-weight sums W (B,) held fixed at
        ``spread_total`` (None: even-spread models, or neutral singlets only). Returns per-atom energies
        (n_centers,) eV, dE/d(edge_vec) at fixed W (E, 3) eV/Å and dE/dW (B,) eV of these centres' energies; the
        engine sums dE/dW over the pieces of each structure and adds :meth:`charge_spread_sum_gradient` of that
        sum (docs/model.md)."""
        n_atoms = species.shape[0]
        if n_centers < 0:
            n_centers = n_atoms
        totals = self._natoms(batch, n_centers, charge.shape[0], natoms)
        if self.spread is not None and spread_total is None and not self._neutral_singlets(charge, spin):
            raise RuntimeError("transip: energy_gradients_given_spread needs spread_total for a learned-spread model")
        if not self.is_local or chunk_size <= 0 or n_centers <= chunk_size:
            return self._energies_and_edge_grad(
                species, edge_index, edge_vec, charge, spin, batch, n_centers, totals, spread_total
            )
        src = edge_index[0]
        dst = edge_index[1]
        self._check_local_sources(src, n_centers)
        # Length bucketing: centres sorted by neighbour count, so each chunk pads to nearly its own length.
        counts = torch.bincount(src, minlength=n_centers)
        perm = torch.argsort(counts, stable=True)
        edge_rank, order = self._rank_edges(src, perm, n_centers)
        starts = torch.arange(0, n_centers + chunk_size, chunk_size, device=src.device).clamp(max=n_centers)
        bounds = torch.searchsorted(edge_rank[order], starts)
        energies = torch.zeros(n_centers, dtype=torch.float64, device=edge_vec.device)
        grad = torch.zeros_like(edge_vec)
        weight_grad = torch.zeros(charge.shape[0], dtype=torch.float64, device=edge_vec.device)
        n_chunks = (n_centers + chunk_size - 1) // chunk_size
        for c in range(n_chunks):
            start = c * chunk_size
            stop = min(start + chunk_size, n_centers)
            centres = perm[start:stop]
            sel = order[int(bounds[c]) : int(bounds[c + 1])]
            width = stop - start
            # the chunk's centres first (renumbered 0..width-1), then every atom as a possible neighbour
            sub_index = torch.stack([edge_rank[sel] - start, dst[sel] + width])
            sub_species = torch.cat([species[centres], species])
            sub_batch = torch.cat([batch[centres], batch])
            e, g, gw = self._energies_and_edge_grad(
                sub_species, sub_index, edge_vec[sel], charge, spin, sub_batch, width, totals, spread_total
            )
            energies[centres] = e
            grad[sel] = g
            weight_grad = weight_grad + gw
        return energies, grad, weight_grad

    def _energies_and_edge_grad(
        self,
        species: Tensor,
        edge_index: Tensor,
        edge_vec: Tensor,
        charge: Tensor,
        spin: Tensor,
        batch: Tensor,
        n_centers: int,
        natoms: Tensor,
        spread_total: Optional[Tensor],  # noqa: UP045 - TorchScript
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One pass of ``forward`` and autograd: per-atom energies (eV, detached), dE/d(edge_vec) (eV/Å) and
        dE/d(spread_total) (B,) in eV (zeros when ``spread_total`` is None: W, if learned, is then inside)."""
        vec = edge_vec.detach().requires_grad_(True)
        inputs = [vec]
        total: Optional[Tensor] = None  # noqa: UP045 - TorchScript
        if spread_total is not None:
            total = spread_total.detach().to(torch.float64).requires_grad_(True)
            inputs.append(total)
        energies = self.forward(species, edge_index, vec, charge, spin, batch, n_centers, natoms, total)
        grads = torch.autograd.grad([energies.sum()], inputs, allow_unused=True)
        weight_grad = torch.zeros(charge.shape[0], dtype=torch.float64, device=edge_vec.device)
        if len(grads) > 1:
            gw: Optional[Tensor] = grads[1]  # noqa: UP045 - TorchScript
            if gw is not None:
                weight_grad = gw
        g: Optional[Tensor] = grads[0]  # noqa: UP045 - TorchScript
        if g is None:
            g = torch.zeros_like(vec)
        return energies.detach(), g, weight_grad
