"""MACE (mace-torch) as an equal-data, equal-budget peer for bench/accuracy_vs_mace.py.

A small MACE (32 channels, max_L 1, 2 interactions, correlation 3, r_max 5 Å, float32) trained with a plain loop
of this project's own (Adam, EMA, the same per-atom energy + force loss as the TransIP trainer, the force term's
form being the trainer's ``ForceLoss``: squared error or smooth L1) for a fixed wall-clock budget. By default it
is given no charge or spin input (the published small MACE has none), so it predicts one energy for all states of
a geometry; per-state errors show what that costs. With ``charge_spin=True``
it gets mace-torch's own per-structure embeddings of the total charge and the multiplicity (categorical, one
vector each, concatenated onto every node's species embedding: the UMA/eSEN style), the fairer peer for the
charge/spin tasks. Needs `pip install mace-torch` (0.3.16 has ``embedding_specs``).
"""

from __future__ import annotations

import copy
import importlib
import time
from collections.abc import Sequence

import numpy as np
import torch

from transip_md.train.losses import ForceLoss
from transip_md.units import MEV_PER_EV

#: mace-torch embeddings of the total charge (-1, 0, +1 -> classes 0-2) and multiplicity (1-3 -> classes 0-2).
CHARGE_SPIN_EMBEDDINGS = {
    "total_charge": {"type": "categorical", "per": "graph", "num_classes": 3, "offset": 1, "emb_dim": 8},
    "total_spin": {"type": "categorical", "per": "graph", "num_classes": 3, "offset": -1, "emb_dim": 8},
}


def _frame_config(frame, mace_data):
    """A mace Configuration: energy (eV), forces (eV/Å), total charge (e) and multiplicity as total_spin."""
    return mace_data.Configuration(
        atomic_numbers=np.asarray(frame.numbers),
        positions=np.asarray(frame.positions, dtype=np.float64),
        properties={
            "energy": float(frame.energy),
            "forces": np.asarray(frame.forces, dtype=np.float64),
            "total_charge": float(frame.charge),
            "total_spin": float(frame.spin),
        },
        property_weights={"energy": 1.0, "forces": 1.0},
        cell=np.zeros((3, 3)),
        pbc=(False, False, False),
    )


def build_mace(
    elements: Sequence[int],
    e0: np.ndarray,
    mean: float,
    std: float,
    r_max: float = 5.0,
    hidden: str = "32x0e + 32x1o",
    avg_num_neighbors: float = 12.0,
    charge_spin: bool = False,
):
    """A ScaleShiftMACE (max_ell 3, correlation 3, 2 interactions) with ``hidden`` irreps; energies eV, Å;
    ``charge_spin``: with the :data:`CHARGE_SPIN_EMBEDDINGS`.

    bench/accuracy_vs_mace.py trains the default (32 channels, max_L 1); bench/peers.py times MACE-small
    (hidden "128x0e") with random weights.
    """
    modules = importlib.import_module("mace.modules")  # first: registers what e3nn's constants need
    o3 = importlib.import_module("e3nn.o3")
    block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    return modules.ScaleShiftMACE(
        r_max=r_max,
        num_bessel=8,
        num_polynomial_cutoff=5,
        max_ell=3,
        interaction_cls=block,
        interaction_cls_first=block,
        num_interactions=2,
        num_elements=len(elements),
        hidden_irreps=o3.Irreps(hidden),
        MLP_irreps=o3.Irreps("16x0e"),
        atomic_energies=e0,
        avg_num_neighbors=avg_num_neighbors,
        atomic_numbers=list(elements),
        correlation=3,
        gate=torch.nn.functional.silu,
        atomic_inter_scale=std,
        atomic_inter_shift=mean,
        embedding_specs=CHARGE_SPIN_EMBEDDINGS if charge_spin else None,
    )


class MacePeer:
    """Data, model and training loop of the MACE peer (energies eV, forces eV/Å)."""

    def __init__(
        self,
        frames,
        train_ids,
        val_ids,
        elements,
        e0: np.ndarray,
        seed: int = 0,
        r_max: float = 5.0,
        charge_spin: bool = False,
        force_loss: ForceLoss | None = None,
        force_weight: float = 10.0,
    ):
        torch.set_default_dtype(torch.float32)
        self.force_loss = force_loss or ForceLoss()
        self.force_weight = force_weight
        self.mace_data = importlib.import_module("mace.data")
        utils = importlib.import_module("mace.tools.utils")
        self.tg = importlib.import_module("mace.tools.torch_geometric")
        self.z_table = utils.AtomicNumberTable(list(elements))
        self.r_max = r_max
        self.frames = frames
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.train = [self._graph(frames[i]) for i in train_ids]
        self.val_ids = list(val_ids)
        self.val = [self._graph(frames[i]) for i in val_ids]
        residual = [
            (frames[i].energy - sum(e0[list(elements).index(int(z))] for z in frames[i].numbers))
            / len(frames[i].numbers)
            for i in train_ids
        ]
        f_rms = float(np.sqrt(np.mean(np.concatenate([frames[i].forces.ravel() for i in train_ids]) ** 2)))
        self.model = build_mace(
            elements, e0, float(np.mean(residual)), max(f_rms, 1e-3), r_max, charge_spin=charge_spin
        )
        self.ema = copy.deepcopy(self.model)

    def _graph(self, frame):
        return self.mace_data.AtomicData.from_config(
            _frame_config(frame, self.mace_data), z_table=self.z_table, cutoff=self.r_max
        )

    def _batches(self, graphs, batch_size: int, shuffle: bool):
        order = self.rng.permutation(len(graphs)) if shuffle else np.arange(len(graphs))
        for s in range(0, len(graphs), batch_size):
            yield self.tg.batch.Batch.from_data_list([graphs[k] for k in order[s : s + batch_size]])

    def _loss(self, model, batch, training: bool):
        out = model(batch.to_dict(), training=training, compute_force=True)
        n = (batch.ptr[1:] - batch.ptr[:-1]).to(out["energy"].dtype)
        le = (((out["energy"] - batch.energy) / n) ** 2).mean()
        df = out["forces"] - batch.forces
        lf = self.force_loss.total(df) / df.numel()
        return le + self.force_weight * lf

    def fit(self, budget_s: float, batch_size: int = 8, lr: float = 5e-3, eval_every_s: float = 60.0) -> list[dict]:
        """Train for ``budget_s`` wall seconds; returns the learning curve [{time_s, val_force_mae_meV_per_A}]."""
        opt = torch.optim.Adam(self.model.parameters(), lr=lr, amsgrad=True)
        start = time.perf_counter()
        next_eval = eval_every_s
        curve, best, best_state, step = [], np.inf, None, 0
        while time.perf_counter() - start < budget_s:
            for batch in self._batches(self.train, batch_size, shuffle=True):
                opt.zero_grad()
                loss = self._loss(self.model, batch, True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 10.0)
                opt.step()
                step += 1
                with torch.no_grad():
                    decay = min(0.99, (1 + step) / (10 + step))
                    for pe, pm in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                        pe.mul_(decay).add_(pm, alpha=1 - decay)
                elapsed = time.perf_counter() - start
                if elapsed >= next_eval or elapsed >= budget_s:
                    mae = self.force_mae(self.ema, self.val)
                    curve.append({"time_s": elapsed, "step": step, "val_force_mae_meV_per_A": mae})
                    if mae < best:
                        best, best_state = mae, copy.deepcopy(self.ema.state_dict())
                    next_eval += eval_every_s
                if elapsed >= budget_s:
                    break
        if best_state is not None:
            self.ema.load_state_dict(best_state)
        return curve

    def force_mae(self, model, graphs) -> float:
        errs = []
        for batch in self._batches(graphs, 16, shuffle=False):
            out = model(batch.to_dict(), training=False, compute_force=True)
            errs.append((out["forces"].detach() - batch.forces).abs().flatten())
        return MEV_PER_EV * float(torch.cat(errs).mean())

    def predict(self, frames, ids) -> dict[int, tuple[float, np.ndarray]]:
        """{frame index: (energy eV, forces eV/Å)} with the best EMA weights."""
        preds = {}
        for i in ids:
            batch = self.tg.batch.Batch.from_data_list([self._graph(frames[i])])
            out = self.ema(batch.to_dict(), training=False, compute_force=True)
            preds[i] = (float(out["energy"].detach()[0]), out["forces"].detach().double().numpy())
        return preds
