"""``train_only_data`` (``--train-only-data``): extra training files that leave the train/validation split alone.

A later stage of a training line that adds a data file must keep the line's validation side, or its validation
frames would include molecules the earlier stages trained on. These tests build small compact files and check the
split itself: the validation side is the same with and without the extra file, the extra file's non-held-out
molecules are all on the training side, and no held-out molecule (of either file) is on any side.
"""

from __future__ import annotations

import numpy as np
import pytest

from transip_md.cli import build_parser
from transip_md.train.commands import build_train_config
from transip_md.train.config import TrainConfig
from transip_md.train.data import write_compact
from transip_md.train.heldout import training_sides

METHANE = np.array([6, 1, 1, 1, 1])


def _write(path, prefix: str, n_molecules: int, heldout: list[bool], seed: int) -> None:
    """``n_molecules`` methane-like molecules of 2 geometries each (random labels: only the split is tested)."""
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(n_molecules):
        positions = rng.normal(scale=0.8, size=(2, len(METHANE), 3))
        parts.append(
            {
                "numbers": METHANE,
                "positions": positions,
                "forces": rng.normal(size=positions.shape),
                "energy": rng.normal(size=2) - 200.0,
                "charge": np.zeros(2, dtype=np.int64),
                "spin": np.ones(2, dtype=np.int64),
                "geometry": np.arange(2),
                "sampler": np.zeros(2, dtype=np.int64),
                "param": np.full(2, 300.0),
            }
        )
    ids = [f"{prefix}-{k}" for k in range(n_molecules)]
    write_compact(path, ids, ["C"] * n_molecules, [prefix] * n_molecules, heldout, parts, ["thermal"], {})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_only")
    main, extra = root / "main.npz", root / "extra.npz"
    _write(main, "main", 10, [k in (2, 7) for k in range(10)], seed=0)
    _write(extra, "extra", 4, [k == 1 for k in range(4)], seed=1)
    return main, extra


def _sides(cfg: TrainConfig) -> tuple[set[str], set[str], list]:
    frames, train, val, reports = training_sides(cfg)
    return {frames[i].mol_id for i in train}, {frames[i].mol_id for i in val}, reports


def test_extra_files_join_the_training_side_and_leave_the_split_alone(files):
    main, extra = files
    before_train, before_val, _ = _sides(TrainConfig(data=[str(main)], val_fraction=0.3, split_seed=1))
    after_train, after_val, reports = _sides(
        TrainConfig(data=[str(main)], train_only_data=[str(extra)], val_fraction=0.3, split_seed=1)
    )
    assert before_val and after_val == before_val  # the validation side is unchanged
    assert after_train == before_train | {"extra-0", "extra-2", "extra-3"}  # extra's held-out molecule is not
    assert not {"main-2", "main-7", "extra-1"} & (after_train | after_val)  # held-out: on neither side
    assert [r.frames for r in reports] == [20, 8]  # one read report per list of files, data first

    # adding the same molecules to ``data`` instead reshuffles the split: what train_only_data avoids
    merged_train, merged_val, _ = _sides(TrainConfig(data=[str(main), str(extra)], val_fraction=0.3, split_seed=1))
    assert merged_val != before_val


def test_with_validation_files_held_out_molecules_are_not_trained_on(files):
    main, extra = files
    train, val, reports = _sides(TrainConfig(data=[str(main)], train_only_data=[str(extra)], val_data=[str(extra)]))
    assert train == {f"main-{k}" for k in range(10) if k not in (2, 7)} | {"extra-0", "extra-2", "extra-3"}
    assert val == {f"extra-{k}" for k in range(4)}  # validation files are used whole, as before
    assert [r.frames for r in reports] == [20, 8, 8]  # data, train-only data, validation data


def test_the_flag_and_the_config_key(files, tmp_path):
    main, extra = files
    parser = build_parser()
    cfg = build_train_config(parser.parse_args(["train", "--data", str(main), "--train-only-data", str(extra)]))
    assert cfg.train_only_data == [str(extra)]
    config = tmp_path / "run.yaml"
    config.write_text(f"data: [{main}]\ntrain_only_data: {extra}\n")
    cfg = build_train_config(parser.parse_args(["train", "--config", str(config)]))
    assert cfg.train_only_data == [str(extra)]  # one file may be given as a string
    assert TrainConfig().train_only_data == []  # older configs (no key) read as before
