"""Reading training data (extxyz, SQLite ASE db, .aselmdb), named errors, split, batching, reference fit."""

import gzip

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.db import connect
from ase.io import write

from transip_md.train.baseline import fit_energy_baseline, state_features
from transip_md.train.data import DataError, TopologyCache, collate, make_batches, read_frames, split


def _mol(i, charge=0, spin=1, forces=True):
    rng = np.random.default_rng(i)
    atoms = Atoms("CH4", positions=np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, -1, -1]]) * 0.63)
    atoms.positions += rng.normal(scale=0.02, size=(5, 3))
    atoms.info.update(charge=charge, spin=spin, mol_id=f"m{i % 3}")  # CH4: 10 electrons
    f = rng.normal(size=(5, 3)) if forces else None
    results = {"energy": -10.0 - i}
    if forces:
        results["forces"] = f
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms, f


def test_extxyz_and_gz_roundtrip(tmp_path):
    mols = [_mol(i, charge=(i % 2), spin=1 + (i % 2)) for i in range(4)]
    bad_parity = _mol(5, charge=0, spin=2)[0]
    write(tmp_path / "parity.xyz", bad_parity, format="extxyz")
    with pytest.raises(DataError, match=r"parity\.xyz: frame 0: impossible charge 0 / multiplicity 2"):
        read_frames(tmp_path / "parity.xyz")
    (tmp_path / "parity.xyz").unlink()
    path = tmp_path / "a.extxyz"
    write(path, [m for m, _ in mols], format="extxyz")
    gz = tmp_path / "b.extxyz.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    for p in (path, gz):
        frames, report = read_frames(p)
        assert report.frames == 4 and len(frames) == 4
        for i, (fr, (_, f)) in enumerate(zip(frames, mols, strict=True)):
            assert fr.energy == pytest.approx(-10.0 - i)
            np.testing.assert_allclose(fr.forces, f, atol=1e-7)
            assert (fr.charge, fr.spin, fr.mol_id) == (i % 2, 1 + i % 2, f"m{i % 3}")
    frames, report = read_frames(tmp_path)  # folder: both files
    assert report.files == 2 and len(frames) == 8


@pytest.mark.parametrize("suffix", [".db", ".aselmdb"])
def test_ase_database_with_charge_spin(tmp_path, suffix):
    path = tmp_path / f"x{suffix}"
    with connect(path) as db:
        for i in range(3):
            atoms, _ = _mol(i)
            atoms.info = {}
            if i == 0:  # key-value pairs ('charge' is reserved by ASE, so 'total_charge')
                db.write(atoms, total_charge=1, spin=2, mol_id="a")
            elif i == 1:  # row data (OMol25 style)
                db.write(atoms, data={"charge": -1, "spin": 2})
            else:  # row data 'info' dict
                db.write(atoms, data={"info": {"charge": 1, "spin": 2}})
    frames, _ = read_frames(path)
    assert [(f.charge, f.spin) for f in frames] == [(1, 2), (-1, 2), (1, 2)]
    assert frames[0].mol_id == "a"
    assert frames[2].energy == pytest.approx(-12.0)
    assert frames[1].forces.shape == (5, 3)


def test_bad_data_named_errors_and_skip(tmp_path):
    good = [_mol(i)[0] for i in range(3)]
    bad = _mol(9, forces=False)[0]
    path = tmp_path / "mixed.extxyz"
    write(path, [good[0], bad, good[1]], format="extxyz")
    with pytest.raises(DataError, match=r"mixed\.extxyz: frame 1: frame has no forces"):
        read_frames(path)
    frames, report = read_frames(path, skip_bad=True)
    assert len(frames) == 2 and report.skipped_frames == 1
    with pytest.raises(DataError, match=r"mixed\.extxyz: frame 0: unknown element C"):
        read_frames(path, elements=[1, 8])
    junk = tmp_path / "junk.extxyz"
    junk.write_text("3\nnot a comment line = [\nX 1 2\n")
    with pytest.raises(DataError, match=r"junk\.extxyz: cannot be read"):
        read_frames(junk)
    frames, report = read_frames(tmp_path, skip_bad=True)
    assert report.skipped_files == 1 and report.skipped_frames == 1 and len(frames) == 2
    with pytest.raises(DataError, match="file not found"):
        read_frames(tmp_path / "missing.extxyz")


def test_split_by_molecule_and_batches(tmp_path):
    path = tmp_path / "a.extxyz"
    write(path, [_mol(i)[0] for i in range(12)], format="extxyz")
    frames, _ = read_frames(path)
    tr, va = split(frames, 0.3, seed=1)
    assert split(frames, 0.3, seed=1) == (tr, va)
    assert va and set(tr).isdisjoint(va) and sorted(tr + va) == list(range(12))
    assert {frames[i].mol_id for i in tr}.isdisjoint({frames[i].mol_id for i in va})
    batches = make_batches(tr, frames, max_atoms=12, rng=np.random.default_rng(0))
    assert all(sum(frames[i].n_atoms for i in b) <= 12 for b in batches)
    assert sorted(i for b in batches for i in b) == tr
    b = collate(batches[0], frames, TopologyCache(frames, None))
    assert b.edge_index.shape[1] == len(batches[0]) * 5 * 4  # all pairs within each structure
    assert int(b.batch.max()) == len(batches[0]) - 1
    bl = collate(batches[0], frames, TopologyCache(frames, 1.0))  # only C-H bonds (0.63-1.1 Å)
    assert 0 < bl.edge_index.shape[1] < b.edge_index.shape[1]


def test_periodic_frame_cannot_train_a_global_model(tmp_path):
    atoms = _mol(0)[0]
    atoms.cell = np.eye(3) * 6.0
    atoms.pbc = True
    write(tmp_path / "box.extxyz", atoms, format="extxyz")
    frames, _ = read_frames(tmp_path / "box.extxyz")
    assert TopologyCache(frames, 2.0)(0).src.shape[0] > 0  # a local model takes it
    with pytest.raises(DataError, match=r"box\.extxyz: frame 0: a global .all-pairs. model cannot run a periodic"):
        TopologyCache(frames, None)(0)


def test_reference_energy_fit_is_exact_for_additive_energies(tmp_path):
    refs = {1: -13.6, 6: -1030.0, 8: -2040.0}
    states = [(0, 1), (1, 2), (-1, 2), (0, 3)]
    state_energy = {(0, 1): 0.0, (1, 2): 9.5, (-1, 2): -0.7, (0, 3): 4.2}  # eV per molecule
    mols = []
    rng = np.random.default_rng(0)
    for k in range(20):
        formula = ["CH4", "H2O", "CO2", "C2H6O", "CH2O"][k % 5]
        charge, spin = states[k % 4]
        atoms = Atoms(formula, positions=rng.normal(size=(len(Atoms(formula)), 3)) * 2)
        atoms.info.update(charge=charge, spin=spin)
        e = sum(refs[z] for z in atoms.numbers) + state_energy[(charge, spin)]
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=np.zeros((len(atoms), 3)))
        mols.append(atoms)
    write(tmp_path / "r.extxyz", mols, format="extxyz")
    frames, _ = read_frames(tmp_path / "r.extxyz")
    fit = fit_energy_baseline(frames, list(range(len(frames))), [1, 6, 7, 8])
    np.testing.assert_allclose(fit.element_energies[[0, 1, 3]], [refs[1], refs[6], refs[8]], atol=1e-6)
    for state, energy in state_energy.items():
        assert abs(state_features(*state) @ fit.state_weights - energy) < 1e-6, state
    assert fit.force_rms == 0.0


def test_gz_legacy_set_reads_the_same_frames_as_its_plain_text(tmp_path):
    """The .gz reader (decompressed in memory) gives the frames ase.io reads from the same text uncompressed:
    count, order, energies, forces, positions, charge/spin; errors in a .gz still name the file and frame."""
    from transip_md.data import legacy_dataset_path

    gz_path = legacy_dataset_path()
    plain = tmp_path / "legacy.extxyz"
    with gzip.open(gz_path, "rb") as fh:
        plain.write_bytes(fh.read())
    from_gz, report = read_frames(gz_path)
    from_plain, _ = read_frames(plain)
    assert report.frames == len(from_gz) == len(from_plain) > 1000
    for i in (0, len(from_gz) // 2, len(from_gz) - 1):  # first, middle, last
        a, b = from_gz[i], from_plain[i]
        assert a.energy == b.energy and (a.charge, a.spin, a.mol_id) == (b.charge, b.spin, b.mol_id)
        np.testing.assert_array_equal(a.numbers, b.numbers)
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.forces, b.forces)
    assert [f.energy for f in from_gz] == [f.energy for f in from_plain]
    # errors name the .gz file and the frame
    bad = tmp_path / "mixed.extxyz.gz"
    text = tmp_path / "mixed.extxyz"
    write(text, [_mol(0)[0], _mol(9, forces=False)[0]], format="extxyz")
    bad.write_bytes(gzip.compress(text.read_bytes()))
    with pytest.raises(DataError, match=r"mixed\.extxyz\.gz: frame 1: frame has no forces"):
        read_frames(bad)
    truncated = tmp_path / "cut.extxyz.gz"
    truncated.write_bytes(gzip.compress(text.read_bytes())[:-20])
    with pytest.raises(DataError, match=r"cut\.extxyz\.gz: cannot be read"):
        read_frames(truncated)
