"""Energies and forces of a batch through the model, the energy/force loss, and the TransIP alignment.

Forces are -dE/dx by autograd through the edge vectors (``create_graph=True`` while training, so the
force loss can be back-propagated: a double backward through the model).

Loss of one batch of B structures with N atoms (eV, Å):

    L_EF(x) = w_E * mean_b ((E_b - E*_b) / n_b)^2  +  w_F * mean_{i,c} rho(F_ic - F*_ic)  [+ w_V * L_V]

with rho(e) = e^2 (force loss 'mse', the default; eV^2/Å^2) or, for 'smooth_l1' with beta (eV/Å),
rho(e) = |e| - beta/2 for |e| >= beta and e^2 / (2 beta) below (eV/Å): an absolute error, smooth at 0, whose
gradient does not grow with the error, so the rare frames with large force errors do not dominate the fit.

Vertical-gap term (``w_V`` = ``vertical_weight`` > 0; the trainer then batches the charge/spin states of one
geometry together): with d_b = E_b - E*_b (eV) and g(b) the geometry of structure b,

    L_V = 1/B sum_b (d_b - mean_{c: g(c) = g(b)} d_c)^2

i.e. the error of every energy difference between states of one geometry (vertical ionisation energy,
electron affinity, singlet-triplet gap; for two states L_V sums (gap error)^2 / 2), in eV^2, not per atom:
a vertical gap is a whole-molecule quantity. A structure alone in its geometry adds 0.

Equivariance modes (rotations drawn uniformly from SO(3) per structure and step, :func:`draw_rotations`):

* ``none``:    L = L_EF(x)
* ``augment``: L = L_EF(R x)  (R x rotates positions, reference forces become R F*)
* ``learned`` (TransIP objective), two random views A = R_1 x and B = R_2 x of each structure, relative
  rotation R = R_2 R_1^T (so B = R A):

      L = 1/2 [L_EF(A) + L_EF(B)]  +  w_A * L_align

  ``align='pooled'`` (the paper's form, :class:`PooledAlignment`): z = mean over the structure's
  atoms of the final per-atom features h (``model.atom_features``), z^ = its parameter-free layer norm
  (zero mean, unit variance over the d features) and T(R, z) = z + W_2 SiLU(W_1 [z, vec R] + b_1) + b_2:

      mse:      L_align = 1/(B d) sum_b || T(R_b, z^_A,b) - z^_B,b ||^2
      infonce:  L_align = 1/B sum_b -log softmax_c( <u_b, v_c> / tau )_b,
                u_b = T(R_b, z^_A,b) / |.|, v_c = z^_B,c / |.| (negatives: the other structures of the batch)

  ``align='atoms'`` (our per-atom extension and the default, :class:`RotationTransform`):

      L_align = 1/(N d) sum_i || h_i(B) - T(R_b(i), h_i(A)) ||^2,   T(R, h) = h + MLP([h, vec R])

Gradients reach the encoder through both views unless the alignment net's ``stop_gradient`` is set
(then the target view B is detached). Why these choices: docs/training.md ("Objective").

Direct-force pretraining (``direct_head`` given, ``direct.py``): F in L_EF is the network's direct force instead of
-dE/dx, so a step needs no double backward; every mode's formula above is otherwise unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model.engine import forces_from_edge_gradient
from .config import FORCE_LOSSES
from .data import Batch
from .direct import direct_outputs

MODES = ("learned", "augment", "none")
ALIGNS = ("pooled", "atoms")
ALIGN_LOSSES = ("mse", "infonce")


def _two_layer(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    """Linear-SiLU-Linear with the last layer zero, so a residual map built on it starts as the identity."""
    net = nn.Sequential(nn.Linear(d_in, hidden), nn.SiLU(), nn.Linear(hidden, d_out))
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


class RotationTransform(nn.Module):
    """Per-atom alignment: T(R, h) = h + MLP([h, vec(R)]), features of view A to predicted features of B = R A."""

    align = "atoms"

    def __init__(self, d_model: int, hidden: int | None = None, stop_gradient: bool = False) -> None:
        super().__init__()
        self.net = _two_layer(d_model + 9, hidden or 2 * d_model, d_model)
        self.stop_gradient = stop_gradient

    def forward(self, h: Tensor, rot: Tensor) -> Tensor:
        """h (N, d); rot (N, 3, 3) relative rotation of each atom's structure."""
        return h + self.net(torch.cat([h, rot.reshape(-1, 9).to(h.dtype)], dim=-1))

    def loss(
        self, feat_a: Tensor, feat_b: Tensor, rel: Tensor, batch: Batch, n_structures: int, n_atoms: int
    ) -> Tensor:
        """Sum over this batch's atoms of the squared error / (global atoms x d)."""
        target = feat_b.detach() if self.stop_gradient else feat_b
        pred = self(feat_a, rel[batch.batch])
        return ((target - pred) ** 2).sum() / (n_atoms * feat_a.shape[-1])


class PooledAlignment(nn.Module):
    """The paper's alignment of pooled molecular embeddings (module docstring has the formulas).

    ``loss``: 'mse' (per structure, so data-parallel shards add up exactly) or 'infonce' (contrastive over the
    structures of the batch, temperature ``temperature``; under data parallel the negatives are the shard's).
    """

    align = "pooled"

    def __init__(
        self,
        d_model: int,
        hidden: int | None = None,
        loss: str = "mse",
        temperature: float = 0.1,
        stop_gradient: bool = False,
    ) -> None:
        super().__init__()
        if loss not in ALIGN_LOSSES:
            raise ValueError(f"align loss must be one of {ALIGN_LOSSES}, got {loss!r}")
        if temperature <= 0:
            raise ValueError(f"align temperature must be > 0, got {temperature}")
        self.net = _two_layer(d_model + 9, hidden or 2 * d_model, d_model)
        self.loss_form = loss
        self.temperature = float(temperature)
        self.stop_gradient = stop_gradient

    def forward(self, z: Tensor, rot: Tensor) -> Tensor:
        """z (B, d) normalised pooled embeddings of view A; rot (B, 3, 3) relative rotations -> predicted z^_B."""
        return z + self.net(torch.cat([z, rot.reshape(-1, 9).to(z.dtype)], dim=-1))

    def loss(
        self, feat_a: Tensor, feat_b: Tensor, rel: Tensor, batch: Batch, n_structures: int, n_atoms: int
    ) -> Tensor:
        """Sum over this batch's structures of the alignment loss / global structures."""
        za = normalised(pooled(feat_a, batch))
        zb = normalised(pooled(feat_b, batch))
        if self.stop_gradient:
            zb = zb.detach()
        pred = self(za, rel)
        if self.loss_form == "mse":
            return ((pred - zb) ** 2).sum() / (n_structures * za.shape[-1])
        logits = F.normalize(pred, dim=-1) @ F.normalize(zb, dim=-1).T / self.temperature
        target = torch.arange(logits.shape[0], device=logits.device)
        return F.cross_entropy(logits, target, reduction="sum") / n_structures


def pooled(features: Tensor, batch: Batch) -> Tensor:
    """Mean of the per-atom features over each structure's atoms: (B, d)."""
    total = torch.zeros(batch.n_structures, features.shape[-1], dtype=features.dtype, device=features.device)
    total = total.index_add(0, batch.batch, features)
    return total / batch.n_atoms.to(features.dtype).unsqueeze(-1)


def normalised(z: Tensor, eps: float = 1e-5) -> Tensor:
    """Parameter-free layer norm over the feature axis: invariant to a common scale of the features."""
    return F.layer_norm(z, (z.shape[-1],), eps=eps)


def build_alignment(
    align: str,
    d_model: int,
    loss: str = "mse",
    temperature: float = 0.1,
    stop_gradient: bool = False,
    dtype: torch.dtype = torch.float32,
) -> nn.Module:
    """The training-only alignment network of ``--equivariance learned --align pooled|atoms``."""
    if align == "pooled":
        net: nn.Module = PooledAlignment(d_model, loss=loss, temperature=temperature, stop_gradient=stop_gradient)
    elif align == "atoms":
        if loss != "mse":
            raise ValueError("align 'atoms' has the mse loss only")
        net = RotationTransform(d_model, stop_gradient=stop_gradient)
    else:
        raise ValueError(f"align must be one of {ALIGNS}, got {align!r}")
    return net.to(dtype)


def alignment_from_config(cfg, d_model: int, dtype: torch.dtype) -> nn.Module | None:
    """build_alignment from a TrainConfig (None unless ``equivariance == 'learned'``)."""
    if cfg.equivariance != "learned":
        return None
    return build_alignment(
        getattr(cfg, "align", "pooled"),
        d_model,
        loss=getattr(cfg, "align_loss", "mse"),
        temperature=getattr(cfg, "align_temperature", 0.1),
        stop_gradient=getattr(cfg, "align_stop_gradient", False),
        dtype=dtype,
    )


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


def draw_rotations(n: int, generator: torch.Generator, mode: str) -> Tensor:
    """Rotations of one step: (n, 2, 3, 3) (two views) for ``learned``, else (n, 3, 3) (unused by ``none``).

    ``augment`` and ``none`` draw the same numbers as before the two-view form existed.
    """
    if mode == "learned":
        return random_rotations(2 * n, generator).view(n, 2, 3, 3)
    return random_rotations(n, generator)


@dataclass(frozen=True)
class ForceLoss:
    """Form of the force term: 'mse' or 'smooth_l1' with ``beta`` eV/Å (module docstring)."""

    form: str = "mse"
    beta: float = 0.05

    def __post_init__(self) -> None:
        if self.form not in FORCE_LOSSES:
            raise ValueError(f"force loss must be one of {FORCE_LOSSES}, got {self.form!r}")

    def total(self, errors: Tensor) -> Tensor:
        """sum of rho over every component of ``errors`` (eV/Å)."""
        if self.form == "mse":
            return (errors**2).sum()
        return F.smooth_l1_loss(errors, torch.zeros_like(errors), reduction="sum", beta=self.beta)


@dataclass
class Output:
    energy: Tensor  # (B,) eV float64
    forces: Tensor  # (N, 3) eV/Å float64
    features: Tensor | None = None  # (N, d)


def batch_inputs(batch: Batch, vec: Tensor) -> tuple:
    """The model's positional arguments for ``batch`` with edge vectors ``vec`` (Å)."""
    return (batch.species, batch.edge_index, vec, batch.charge, batch.spin, batch.batch, -1)


def per_atom_energies(model: nn.Module, batch: Batch, vec: Tensor) -> tuple[Tensor, Tensor]:
    """(per-atom energies eV float64, final features) in one pass: the same numbers as ``model(...)``."""
    args = batch_inputs(batch, vec)
    features = model.atom_features(*args)
    energies = model.energies_from_features(features, batch.species)
    if hasattr(model, "prior_energies"):  # nuclear repulsion and state energy (model format 2)
        energies = energies + model.prior_energies(*args)
    return energies, features


def structure_energies(per_atom: Tensor, batch: Batch) -> Tensor:
    """Energies (B,) in eV float64: the per-atom energies (N,) summed over each structure of ``batch``."""
    energy = torch.zeros(batch.n_structures, dtype=torch.float64, device=per_atom.device)
    return energy.index_add(0, batch.batch, per_atom)


def evaluate_batch(
    model: nn.Module,
    batch: Batch,
    rotations: Tensor | None = None,
    training: bool = True,
    want_features: bool = False,
    direct_head: nn.Module | None = None,
) -> Output:
    """Energies (B,) and forces (N, 3) of ``batch`` (rotated by ``rotations`` (B, 3, 3) if given).

    With ``direct_head`` the forces are the direct ones (``direct.py``: no gradient through the positions)."""
    if direct_head is not None:
        per_atom, forces, features = direct_outputs(model, direct_head, batch, batch.edge_vectors(rotations))
        return Output(structure_energies(per_atom, batch), forces, features if want_features else None)
    vec = batch.edge_vectors(rotations).detach().requires_grad_(True)
    if want_features:
        per_atom, features = per_atom_energies(model, batch, vec)
    else:
        features = None
        per_atom = model(*batch_inputs(batch, vec))
    energy = structure_energies(per_atom, batch)
    (grad,) = torch.autograd.grad(energy.sum(), vec, create_graph=training)
    grad = grad.to(torch.float64)
    forces = forces_from_edge_gradient(grad, batch.edge_index, batch.species.shape[0])  # out of place: keeps the graph
    return Output(energy, forces, features)


def energy_force_loss(
    out: Output,
    batch: Batch,
    ref_forces: Tensor,
    w_energy: float,
    w_force: float,
    n_structures: int,
    n_atoms: int,
    w_vertical: float = 0.0,
    force_loss: ForceLoss = ForceLoss(),
) -> tuple[Tensor, dict[str, float]]:
    """Sums over this batch divided by the GLOBAL structure / atom counts (so data-parallel shards add up)."""
    de = (out.energy - batch.energy) / batch.n_atoms
    df = out.forces - ref_forces
    le = (de**2).sum() / n_structures
    lf = force_loss.total(df) / (3 * n_atoms)
    loss = w_energy * le + w_force * lf
    parts = {"loss_energy": float(le.detach()), "loss_force": float(lf.detach())}
    if w_vertical > 0.0:
        lv = vertical_gap_loss(out.energy - batch.energy, batch.geometry) / n_structures
        loss = loss + w_vertical * lv
        parts["loss_vertical"] = float(lv.detach())
    return loss, parts


def vertical_gap_loss(errors: Tensor, geometry: Tensor) -> Tensor:
    """sum_b (d_b - mean of d over b's geometry)^2 (eV^2) for energy errors ``errors`` (B,) and geometry labels."""
    n_groups = int(geometry.max()) + 1
    sums = torch.zeros(n_groups, dtype=errors.dtype, device=errors.device).index_add(0, geometry, errors)
    counts = torch.zeros(n_groups, dtype=errors.dtype, device=errors.device).index_add(
        0, geometry, torch.ones_like(errors)
    )
    return ((errors - (sums / counts)[geometry]) ** 2).sum()


def views(rotations: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
    """(rotation of view A or None for x itself, rotation of view B, relative rotation R = R_B R_A^T), float64.

    ``rotations`` (B, 2, 3, 3): two random views; (B, 3, 3): views x and R x (the form before two views).
    """
    rot = rotations.to(torch.float64)
    if rot.dim() == 4:
        rot_a, rot_b = rot[:, 0], rot[:, 1]
        return rot_a, rot_b, rot_b @ rot_a.transpose(1, 2)
    return None, rot, rot


def training_loss(
    model: nn.Module,
    transform: nn.Module | None,
    batch: Batch,
    mode: str,
    rotations: Tensor | None,
    w_energy: float,
    w_force: float,
    w_align: float,
    n_structures: int | None = None,
    n_atoms: int | None = None,
    w_vertical: float = 0.0,
    direct_head: nn.Module | None = None,
    force_loss: ForceLoss = ForceLoss(),
) -> tuple[Tensor, dict[str, float]]:
    """The loss of one batch for equivariance ``mode`` (formulas in the module docstring).

    ``direct_head``: fit direct forces instead of -dE/dx (direct-force pretraining, ``direct.py``).

    ``rotations``: (B, 3, 3) for ``augment``; for ``learned`` (B, 2, 3, 3) (two random views, what
    :func:`draw_rotations` gives) or (B, 3, 3) (views x and R x). ``transform`` is the alignment network
    (:func:`build_alignment`); its ``align`` attribute selects the pooled or per-atom form.
    ``n_structures``/``n_atoms`` are the counts of the whole (global) batch; default: this batch.
    """
    if mode not in MODES:
        raise ValueError(f"equivariance mode must be one of {MODES}, got {mode!r}")
    ns = batch.n_structures if n_structures is None else n_structures
    na = int(batch.species.shape[0]) if n_atoms is None else n_atoms
    if mode == "none":
        out = evaluate_batch(model, batch, direct_head=direct_head)
        return energy_force_loss(out, batch, batch.forces, w_energy, w_force, ns, na, w_vertical, force_loss)
    if rotations is None:
        raise ValueError(f"mode {mode!r} needs rotations for each structure")
    if mode == "augment":
        rot = rotations.to(torch.float64)
        out = evaluate_batch(model, batch, rot, direct_head=direct_head)
        return energy_force_loss(
            out, batch, batch.rotated_forces(rot), w_energy, w_force, ns, na, w_vertical, force_loss
        )
    if transform is None:
        raise ValueError("mode 'learned' needs the alignment network (build_alignment)")
    rot_a, rot_b, rel = views(rotations)
    out_a = evaluate_batch(model, batch, rot_a, want_features=True, direct_head=direct_head)
    out_b = evaluate_batch(model, batch, rot_b, want_features=True, direct_head=direct_head)
    ref_a = batch.forces if rot_a is None else batch.rotated_forces(rot_a)
    l_a, parts_a = energy_force_loss(out_a, batch, ref_a, w_energy, w_force, ns, na, w_vertical, force_loss)
    l_b, parts_b = energy_force_loss(
        out_b, batch, batch.rotated_forces(rot_b), w_energy, w_force, ns, na, w_vertical, force_loss
    )
    align = transform.loss(out_a.features, out_b.features, rel, batch, ns, na)
    loss = 0.5 * (l_a + l_b) + w_align * align
    parts = {k: 0.5 * (parts_a[k] + parts_b[k]) for k in parts_a}
    parts["loss_align"] = float(align.detach())
    return loss, parts
