"""The compact labelled-data format (write_compact / read_frames / heldout_split), incl. damaged files."""

import zipfile

import numpy as np
import pytest

from transip_md.train.data import (
    COMPACT_FORMAT,
    DataError,
    heldout_split,
    load_compact,
    read_frames,
    split,
    write_compact,
)
from transip_md.train.heldout import partition


def _part(numbers, n_frames, rng, states=((0, 1),)):
    n = len(numbers)
    return {
        "numbers": np.asarray(numbers, dtype=np.uint8),
        "positions": rng.normal(size=(n_frames, n, 3)).astype(np.float32),
        "forces": rng.normal(size=(n_frames, n, 3)).astype(np.float32),
        "energy": rng.normal(size=n_frames) - 100.0,
        "charge": np.array([states[k % len(states)][0] for k in range(n_frames)], dtype=np.int8),
        "spin": np.array([states[k % len(states)][1] for k in range(n_frames)], dtype=np.int8),
        "geometry": np.arange(n_frames, dtype=np.int32) // len(states),
        "sampler": np.zeros(n_frames, dtype=np.uint8),
        "param": np.full(n_frames, 300.0, dtype=np.float32),
    }


@pytest.fixture
def compact(tmp_path):
    rng = np.random.default_rng(0)
    parts = [
        _part([6, 1, 1, 1, 1], 4, rng, ((0, 1), (1, 2))),  # CH4: 10 electrons
        _part([8, 1, 1], 3, rng),
        _part([9, 1], 2, rng, ((0, 1), (0, 3))),
    ]
    path = tmp_path / "set.npz"
    ids, smiles = ["a", "b", "c"], ["C", "O", "F"]
    write_compact(path, ids, smiles, ["t", "t", "t"], [False, True, False], parts, ("thermal",), {})
    return path, parts


def test_roundtrip_preserves_frames_states_geometry_ids_and_split(compact):
    path, parts = compact
    frames, report = read_frames(path)
    assert report.frames == len(frames) == 9 and report.files == 1
    first = frames[:4]
    assert [f.n_atoms for f in frames] == [5] * 4 + [3] * 3 + [2] * 2
    np.testing.assert_array_equal(first[1].positions, parts[0]["positions"][1].astype(np.float64))
    np.testing.assert_array_equal(frames[5].forces, parts[1]["forces"][1].astype(np.float64))
    assert [f.energy for f in first] == list(parts[0]["energy"])  # float64 energies exactly
    assert [(f.charge, f.spin) for f in first] == [(0, 1), (1, 2), (0, 1), (1, 2)]
    # geometry ids are global: the two states of one geometry share one, other molecules get new ones
    assert [f.geometry_id for f in frames] == [0, 0, 1, 1, 2, 3, 4, 5, 5]
    assert {f.mol_id for f in frames} == {"a", "b", "c"} and frames[0].sampler == "thermal"
    train, held = heldout_split(frames)
    assert held == [4, 5, 6] and train == [0, 1, 2, 3, 7, 8]
    tr3, va3, held3 = partition(frames, 0.4, seed=0)  # the trainer's three sides keep that held-out side
    assert held3 == held and sorted(tr3 + va3) == train and va3
    tr, va = split(frames, 0.3, seed=0)  # the generic split still groups by molecule
    assert not {frames[i].mol_id for i in tr} & {frames[i].mol_id for i in va}


def test_truncated_file_gives_named_error(compact, tmp_path):
    path, _ = compact
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 30, 100):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        with pytest.raises(DataError, match=rf"cut{cut}\.npz.*(truncated|corrupt)"):
            read_frames(bad)
    frames, report = read_frames([path, bad], skip_bad=True)
    assert len(frames) == 9 and report.skipped_files == 1 and "truncated" in report.problems[0]


def test_corrupt_member_and_missing_array_are_named(compact, tmp_path):
    path, _ = compact
    z = dict(np.load(path))
    bad = tmp_path / "flipped.npz"
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("positions.npy")
    mid = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    raw[mid] ^= 0xFF
    bad.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="flipped.npz"):
        load_compact(bad)
    del z["forces"]
    missing = tmp_path / "missing.npz"
    np.savez(missing, **z)
    with pytest.raises(DataError, match=r"missing\.npz.*lacks arrays \['forces'\]"):
        read_frames(missing)
    z2 = dict(np.load(path))
    z2["positions"] = z2["positions"][:-1]
    short = tmp_path / "short.npz"
    np.savez(short, **z2)
    with pytest.raises(DataError, match=r"short\.npz: positions has shape"):
        read_frames(short)
    z3 = dict(np.load(path))
    z3["format"] = np.array("something-else/9")
    other = tmp_path / "other.npz"
    np.savez(other, **z3)
    with pytest.raises(DataError, match=COMPACT_FORMAT):
        read_frames(other)


def test_bad_frames_are_checked_like_extxyz(compact, tmp_path):
    path, _ = compact
    z = dict(np.load(path))
    z["spin"] = z["spin"].copy()
    z["spin"][5] = 2  # water doublet: impossible parity
    z["energy"] = z["energy"].copy()
    z["energy"][7] = np.nan
    bad = tmp_path / "bad.npz"
    np.savez(bad, **z)
    with pytest.raises(DataError, match=r"bad\.npz: frame 5: impossible charge"):
        read_frames(bad)
    frames, report = read_frames(bad, skip_bad=True)
    assert len(frames) == 7 and report.skipped_frames == 2
    with pytest.raises(DataError, match="unknown element F"):
        read_frames(path, elements=[1, 6, 8])


def test_shipped_set_meets_the_counts():
    """The shipped set: >= 3,000 molecules, >= 40,000 frames, every element in >= 300 molecules, every state
    >= 5,000 frames, held-out molecules covering every element, <= 40 MB."""
    from collections import Counter

    from transip_md.data import default_dataset_path

    path = default_dataset_path()
    assert path.name.endswith(".npz") and path.stat().st_size <= 40e6
    a = load_compact(path)
    assert len(a["mol_id"]) >= 3000 and len(a["energy"]) >= 40000
    start = np.concatenate([[0], np.cumsum(a["mol_natoms"])])
    els = [set(a["mol_numbers"][start[k] : start[k + 1]].tolist()) for k in range(len(a["mol_id"]))]
    per_el = Counter(z for s in els for z in s)
    held = Counter(z for s, h in zip(els, a["mol_heldout"], strict=True) if h for z in s)
    for z in (1, 6, 7, 8, 9, 15, 16, 17, 35):
        assert per_el[z] >= 300 and held[z] >= 10, z
    states = Counter(zip(a["charge"].tolist(), a["spin"].tolist(), strict=True))
    assert set(states) == {(0, 1), (1, 2), (-1, 2), (0, 3)} and min(states.values()) >= 5000
    assert 0.08 <= a["mol_heldout"].mean() <= 0.12
    # vertical states: some geometry ids carry all four states at identical positions
    geo, n = np.unique(a["geometry"], return_counts=True)
    assert (n == 4).sum() >= 3000
    assert np.abs(a["forces"]).max() <= 100.0 and np.isfinite(a["energy"]).all()
