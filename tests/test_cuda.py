"""CUDA paths against the CPU. These need a CUDA GPU and a CUDA build of torch; the project's development and
CI machines have neither (torch 2.13.0 CPU), so here they are skipped for that external reason only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import ethanol, make_model, water_box

from transip_md.model import export, load_compiled, predict
from transip_md.units import ANGSTROM_TO_NM

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU and a CUDA build of torch (none on this machine)"
)


@pytest.mark.parametrize("cutoff", [None, 4.0], ids=["global", "local"])
def test_predict_on_cuda_matches_cpu(tmp_path, cutoff):
    path = export(make_model(cutoff), tmp_path / "m.pt")
    atoms = ethanol() if cutoff is None else water_box(3)
    ref = predict(load_compiled(path), atoms.numbers, atoms.positions, atoms.cell, atoms.pbc, virial=True)
    out = predict(
        load_compiled(path, "cuda"), atoms.numbers, atoms.positions, atoms.cell, atoms.pbc, virial=True, device="cuda"
    )
    assert abs(out.energy - ref.energy) < 1e-8
    np.testing.assert_allclose(out.forces, ref.forces, atol=1e-8)
    np.testing.assert_allclose(out.virial, ref.virial, atol=1e-7)


def test_sdpa_kernels_on_cuda_match_math(tmp_path):
    """Files exported with --attention sdpa use torch's fused attention on a GPU: same energies and forces."""
    model = make_model(None, dtype="float32")
    math_path = export(model, tmp_path / "math.pt")
    model.set_attention_kernel("sdpa")
    sdpa_path = export(model, tmp_path / "sdpa.pt")
    atoms = ethanol()
    a, b = (
        predict(load_compiled(p, "cuda"), atoms.numbers, atoms.positions, device="cuda") for p in (math_path, sdpa_path)
    )
    assert abs(a.energy - b.energy) < 1e-3
    np.testing.assert_allclose(a.forces, b.forces, atol=1e-3)


def test_openmm_torch_module_on_cuda_matches_cpu(tmp_path):
    """The TorchForce module (Verlet list, minimum image, unit conversion) on CUDA tensors."""
    from transip_md.openmm.torch_module import build_torch_module

    path = export(make_model(4.0), tmp_path / "m.pt")
    atoms = water_box(3)
    pos_nm = torch.tensor(atoms.positions * ANGSTROM_TO_NM)
    box_nm = torch.tensor(atoms.cell.array * ANGSTROM_TO_NM)
    out = {}
    for device in ("cpu", "cuda"):
        compiled = load_compiled(path, device)
        module = build_torch_module(
            compiled.module, atoms.numbers.tolist(), len(atoms), None, 4.0, True, 0, 1, torch.float64
        ).to(device)
        energy, forces = module(pos_nm.to(device), box_nm.to(device))
        out[device] = (float(energy), forces.cpu().numpy())
    assert abs(out["cuda"][0] - out["cpu"][0]) < 1e-6
    np.testing.assert_allclose(out["cuda"][1], out["cpu"][1], atol=1e-6)


@pytest.mark.parametrize("mode", ["augment", "learned"])
def test_training_on_cuda_matches_cpu(tmp_path, mode):
    """`transip-md train --device cuda`: the same losses, validation errors and exported model as on the CPU (float64,
    a few steps: only summation order differs), and a checkpoint written on the GPU resumes on the CPU."""
    from transip_md.data import legacy_dataset_path
    from transip_md.train.config import TrainConfig
    from transip_md.train.trainer import Trainer

    def config(device: str, out: str, epochs: int = 2) -> TrainConfig:
        return TrainConfig(
            data=[str(legacy_dataset_path())], output=str(tmp_path / out), equivariance=mode, dtype="float64",
            epochs=epochs, max_frames=24, max_val_frames=6, max_atoms=64, warmup_steps=2, threads=1,
            model={"d_model": 24, "n_layers": 2, "n_heads": 2, "cutoff": 4.0, "n_rope_freqs": 1, "n_rbf": 16},
            symmetry_structures=2, symmetry_rotations=2, progress=False, plots=False, device=device,
        )  # fmt: skip

    runs = {device: Trainer(config(device, device)) for device in ("cpu", "cuda")}
    assert next(runs["cuda"].model.parameters()).is_cuda
    results = {device: tr.fit() for device, tr in runs.items()}
    for row_cpu, row_cuda in zip(results["cpu"]["history"], results["cuda"]["history"], strict=True):
        for key in ("train_loss", "val_force_mae_meV_per_A", "val_energy_mae_meV", "val_sym_force_rms_meV_per_A"):
            assert row_cuda[key] == pytest.approx(row_cpu[key], rel=1e-6), key
    atoms = ethanol()
    a, b = (predict(load_compiled(results[d]["model"]), atoms.numbers, atoms.positions) for d in ("cpu", "cuda"))
    assert abs(a.energy - b.energy) < 1e-6
    np.testing.assert_allclose(a.forces, b.forces, atol=1e-6)
    resumed = Trainer(dataclasses.replace(config("cpu", "cuda", epochs=3), resume=str(tmp_path / "cuda")))
    assert len(resumed.fit()["history"]) == 3
