"""`--time-budget`: training stops on the wall clock, the LR schedule has fully decayed, and a model is exported."""

import time

import pytest

from transip_md.data import default_dataset_path
from transip_md.train.config import TrainConfig
from transip_md.train.trainer import Trainer


def test_time_budget_stops_training_with_the_schedule_decayed(tmp_path):
    cfg = TrainConfig(
        data=[str(default_dataset_path())],
        output=str(tmp_path / "run"),
        equivariance="none",
        epochs=1000,
        max_frames=24,
        max_val_frames=4,
        max_atoms=64,
        lr=3e-3,
        min_lr_ratio=0.05,
        warmup_steps=1,
        time_budget_s=3.0,
        threads=1,
        model={"d_model": 16, "n_layers": 1, "n_heads": 2, "cutoff": 4.0, "n_rope_freqs": 1, "n_rbf": 16},
        symmetry_structures=1,
        symmetry_rotations=2,
        progress=False,
        plots=False,
    )
    trainer = Trainer(cfg)
    start = time.time()
    result = trainer.fit()
    elapsed = time.time() - start
    assert 1 <= len(result["history"]) < 1000
    assert elapsed < 3.0 + 120.0  # stopped by the budget (plus one epoch's validation and the export), not epochs
    assert trainer.scheduler.get_last_lr()[0] == pytest.approx(3e-3 * 0.05, rel=1e-9)
    assert (tmp_path / "run" / "model.pt").exists()
