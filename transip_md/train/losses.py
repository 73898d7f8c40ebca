"""Energies and forces of a batch through the model, the energy/force loss, and the TransIP alignment.

Forces are -dE/dx by autograd through the edge vectors (``create_graph=True`` while training, so the
force loss can be back-propagated: a double backward through the model).

Loss of one batch of B structures with N atoms (eV, Å):

    L_EF(x) = w_E * mean_b ((E_b - E*_b) / n_b)^2  +  w_F * mean_{i,c} (F_ic - F*_ic)^2

Equivariance modes (one rotation R_b drawn uniformly from SO(3) per structure and step):

* ``none``:    L = L_EF(x)
* ``augment``: L = L_EF(R x)  (R x rotates positions, reference forces become R F*)
* ``learned`` (TransIP objective):

      L = 1/2 [L_EF(x) + L_EF(R x)]  +  w_A * L_align
      L_align = 1/(N d) * sum_i || h_i(R x) - T(R_b(i), h_i(x)) ||^2

  with h = ``model.atom_features`` (d = d_model features per atom, after the final LayerNorm) and T a
  small learned network conditioned on R (:class:`RotationTransform`): T(R, h) = h + MLP([h, vec(R)]).
  Gradients flow through both sides: h(R x) is not a fixed target but the same encoder on a rotated
  input, and the point of the objective is to shape the encoder so that rotating the input acts on the
  features as a predictable (learned) map, which is what keeps the energy head's output from depending on
  orientation. Collapse of h to a constant is excluded by the energy/force terms, which need informative
  features; an invariant h (T = identity) is a legitimate optimum since invariant features give exact
  symmetry. The residual form makes T start close to the identity, the invariant case. This is our
  reading of the TransIP idea (the paper's text was not available); it is documented in docs/training.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .data import Batch

MODES = ("learned", "augment", "none")


class RotationTransform(nn.Module):
    """T(R, h) = h + MLP([h, vec(R)]): a learned map of features of x to predicted features of R x."""

    def __init__(self, d_model: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or 2 * d_model
        self.net = nn.Sequential(nn.Linear(d_model + 9, hidden), nn.SiLU(), nn.Linear(hidden, d_model))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, h: Tensor, rot: Tensor) -> Tensor:
        """h (N, d); rot (N, 3, 3) rotation of each atom's structure."""
        return h + self.net(torch.cat([h, rot.reshape(-1, 9).to(h.dtype)], dim=-1))


def random_rotations(n: int, generator: torch.Generator, dtype: torch.dtype = torch.float64) -> Tensor:
    """n uniform random rotation matrices (n, 3, 3) from unit quaternions."""
    q = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    q = q / q.norm(dim=1, keepdim=True)
    w, x, y, z = q.unbind(1)
    rot = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=1,
    ).view(n, 3, 3)  # fmt: skip
    return rot.to(dtype)


@dataclass
class Output:
    energy: Tensor  # (B,) eV float64
    forces: Tensor  # (N, 3) eV/Å float64
    features: Tensor | None = None  # (N, d)


def model_inputs(batch: Batch, vec: Tensor) -> tuple:
    return (batch.species, batch.edge_index, vec, batch.charge, batch.spin, batch.batch, -1)


def evaluate_batch(
    model: nn.Module,
    batch: Batch,
    rotations: Tensor | None = None,
    training: bool = True,
    want_features: bool = False,
) -> Output:
    """Energies (B,) and forces (N, 3) of ``batch`` (rotated by ``rotations`` if given)."""
    vec = batch.edge_vectors(rotations).detach().requires_grad_(True)
    args = model_inputs(batch, vec)
    if want_features:
        features = model.atom_features(*args)
        per_atom = model.energies_from_features(features, batch.species)
    else:
        features = None
        per_atom = model(*args)
    energy = torch.zeros(batch.n_structures, dtype=torch.float64).index_add(0, batch.batch, per_atom)
    (grad,) = torch.autograd.grad(energy.sum(), vec, create_graph=training)
    grad = grad.to(torch.float64)
    n = batch.species.shape[0]
    forces = torch.zeros(n, 3, dtype=torch.float64).index_add(0, batch.edge_index[0], grad)
    forces = forces.index_add(0, batch.edge_index[1], -grad)
    return Output(energy, forces, features)


def energy_force_loss(
    out: Output,
    batch: Batch,
    ref_forces: Tensor,
    w_energy: float,
    w_force: float,
    n_structures: int,
    n_atoms: int,
) -> tuple[Tensor, dict[str, float]]:
    """Sums over this batch divided by the GLOBAL structure / atom counts (so data-parallel shards add up)."""
    de = (out.energy - batch.energy) / batch.n_atoms
    df = out.forces - ref_forces
    le = (de**2).sum() / n_structures
    lf = (df**2).sum() / (3 * n_atoms)
    return w_energy * le + w_force * lf, {"loss_energy": float(le.detach()), "loss_force": float(lf.detach())}


def training_loss(
    model: nn.Module,
    transform: RotationTransform | None,
    batch: Batch,
    mode: str,
    rotations: Tensor | None,
    w_energy: float,
    w_force: float,
    w_align: float,
    n_structures: int | None = None,
    n_atoms: int | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The loss of one batch for equivariance ``mode`` (formulas in the module docstring).

    ``rotations`` (B, 3, 3), one per structure, is needed for ``augment`` and ``learned``.
    ``n_structures``/``n_atoms`` are the counts of the whole (global) batch; default: this batch.
    """
    if mode not in MODES:
        raise ValueError(f"equivariance mode must be one of {MODES}, got {mode!r}")
    ns = batch.n_structures if n_structures is None else n_structures
    na = int(batch.species.shape[0]) if n_atoms is None else n_atoms
    if mode == "none":
        out = evaluate_batch(model, batch)
        return energy_force_loss(out, batch, batch.forces, w_energy, w_force, ns, na)
    if rotations is None:
        raise ValueError(f"mode {mode!r} needs one rotation per structure")
    rot = rotations.to(torch.float64)
    if mode == "augment":
        out = evaluate_batch(model, batch, rot)
        return energy_force_loss(out, batch, batch.rotated_forces(rot), w_energy, w_force, ns, na)
    out_x = evaluate_batch(model, batch, None, want_features=True)
    out_r = evaluate_batch(model, batch, rot, want_features=True)
    l_x, parts_x = energy_force_loss(out_x, batch, batch.forces, w_energy, w_force, ns, na)
    l_r, parts_r = energy_force_loss(out_r, batch, batch.rotated_forces(rot), w_energy, w_force, ns, na)
    pred = transform(out_x.features, rot[batch.batch])
    d = out_x.features.shape[-1]
    align = ((out_r.features - pred) ** 2).sum() / (na * d)
    loss = 0.5 * (l_x + l_r) + w_align * align
    parts = {k: 0.5 * (parts_x[k] + parts_r[k]) for k in parts_x}
    parts["loss_align"] = float(align.detach())
    return loss, parts
