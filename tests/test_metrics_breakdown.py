"""Error breakdowns of ``transip-md evaluate``: per sampler and per element, checked against hand sums."""

import numpy as np
import pytest

from transip_md.train.data import Frame
from transip_md.train.evaluate import format_table
from transip_md.train.metrics import (
    error_sums,
    metrics_from_sums,
    per_element_force_metrics,
    per_sampler_metrics,
    per_state_metrics,
)


def _frames_and_predictions():
    rng = np.random.default_rng(3)
    frames, preds = [], {}
    layout = [([8, 1, 1], "thermal"), ([6, 1, 1, 1, 1], "stretch_bond"), ([6, 8, 1, 1], "thermal"), ([1, 1], "")]
    for i, (numbers, sampler) in enumerate(layout):
        n = len(numbers)
        forces = rng.normal(size=(n, 3))
        frames.append(Frame(np.array(numbers), rng.normal(size=(n, 3)), float(i), forces, sampler=sampler))
        preds[i] = (float(i) + 0.01 * (i + 1), forces + rng.normal(scale=0.1, size=(n, 3)))
    return frames, preds


def test_per_sampler_groups_frames_by_their_sampler_and_leaves_unnamed_ones_out():
    frames, preds = _frames_and_predictions()
    by_sampler = per_sampler_metrics(frames, preds)
    assert list(by_sampler) == ["stretch_bond", "thermal"]
    thermal = metrics_from_sums(error_sums(frames, {i: preds[i] for i in (0, 2)}))
    assert by_sampler["thermal"] == thermal and by_sampler["thermal"]["frames"] == 2
    assert by_sampler["stretch_bond"]["frames"] == 1
    assert per_sampler_metrics([frames[3]], {0: preds[3]}) == {}  # extxyz-like frames: no breakdown


def test_per_element_force_errors_match_a_hand_sum():
    frames, preds = _frames_and_predictions()
    got = per_element_force_metrics(frames, preds)
    assert list(got) == ["H", "C", "O"]  # atomic-number order
    for symbol, z in (("H", 1), ("C", 6), ("O", 8)):
        err = np.concatenate([(preds[i][1] - f.forces)[f.numbers == z].ravel() for i, f in enumerate(frames)])
        ref = np.concatenate([f.forces[f.numbers == z].ravel() for f in frames])
        assert got[symbol]["atoms"] == err.size // 3
        assert got[symbol]["force_mae_meV_per_A"] == pytest.approx(1000 * np.abs(err).mean())
        assert got[symbol]["force_rmse_meV_per_A"] == pytest.approx(1000 * np.sqrt((err**2).mean()))
        assert got[symbol]["zero_force_mae_meV_per_A"] == pytest.approx(1000 * np.abs(ref).mean())


def test_the_table_prints_every_breakdown():
    frames, preds = _frames_and_predictions()
    result = {
        "model": "m.pt",
        "frames": len(frames),
        "skipped_frames": 0,
        "overall": metrics_from_sums(error_sums(frames, preds)),
        "per_state": per_state_metrics(frames, preds),
        "per_sampler": per_sampler_metrics(frames, preds),
        "per_element": per_element_force_metrics(frames, preds),
    }
    table = format_table(result)
    lines = table.splitlines()
    thermal = next(line for line in lines if line.startswith("thermal"))
    assert f"{result['per_sampler']['thermal']['force_mae_meV_per_A']:.1f}" in thermal
    oxygen = next(line for line in lines if line.startswith("O "))
    assert f"{result['per_element']['O']['zero_force_mae_meV_per_A']:.1f}" in oxygen
    assert any(line.startswith("sampler") for line in lines) and any(line.startswith("element") for line in lines)
