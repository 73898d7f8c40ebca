"""`transip-md evaluate --heldout --vertical` end to end, checked against the ASE calculator frame by frame.

A small compact file is cut from the shipped set: two held-out molecules with geometries labelled in all four
charge/spin states, and one training molecule that must not be evaluated.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from transip_md.ase import TransIPCalculator
from transip_md.cli import main
from transip_md.data import default_dataset_path, default_model_path
from transip_md.train.data import load_compact, write_compact

STATES = {(0, 1), (1, 2), (-1, 2), (0, 3)}


def _molecule_part(a: dict[str, np.ndarray], k: int, max_geometries: int) -> dict[str, np.ndarray] | None:
    """Molecule k's frames of its first ``max_geometries`` geometries labelled in all four states, or None."""
    starts = np.concatenate([[0], np.cumsum(a["mol_natoms"])])
    numbers = a["mol_numbers"][starts[k] : starts[k + 1]].astype(np.int64)
    frame_rows = np.flatnonzero(a["frame_mol"] == k)
    full = [
        g
        for g in np.unique(a["geometry"][frame_rows])
        if {(int(a["charge"][i]), int(a["spin"][i])) for i in frame_rows[a["geometry"][frame_rows] == g]} >= STATES
    ][:max_geometries]
    if not full:
        return None
    keep = frame_rows[np.isin(a["geometry"][frame_rows], full)]
    atom_start = np.concatenate([[0], np.cumsum(a["mol_natoms"][a["frame_mol"]])])
    n = len(numbers)
    take = lambda key: np.stack([a[key][atom_start[i] : atom_start[i] + n] for i in keep])  # noqa: E731
    _, local_geometry = np.unique(a["geometry"][keep], return_inverse=True)
    return {
        "numbers": numbers,
        "positions": take("positions"),
        "forces": take("forces"),
        "energy": a["energy"][keep],
        "charge": a["charge"][keep],
        "spin": a["spin"][keep],
        "geometry": local_geometry.astype(np.int64),
        "sampler": a["sampler"][keep],
        "param": a["param"][keep],
    }


def _choose(
    a: dict[str, np.ndarray], held: int, training: int, max_geometries: int, max_atoms: int
) -> list[tuple[int, dict[str, np.ndarray]]]:
    """The first ``held`` held-out and ``training`` training molecules (at most ``max_atoms`` atoms) with
    geometries labelled in all four states: (molecule index, its part), held-out ones first."""
    chosen: list[tuple[int, dict[str, np.ndarray]]] = []
    for want_heldout, count in ((True, held), (False, training)):
        for k in np.flatnonzero(a["mol_heldout"] == want_heldout):
            part = _molecule_part(a, int(k), max_geometries=max_geometries)
            if part is not None and len(part["numbers"]) <= max_atoms:
                chosen.append((int(k), part))
            if sum(bool(a["mol_heldout"][j]) == want_heldout for j, _ in chosen) == count:
                break
    return chosen


def _write_parts(path, a: dict[str, np.ndarray], chosen: list[tuple[int, dict[str, np.ndarray]]], heldout: list[bool]):
    ks = [k for k, _ in chosen]
    write_compact(
        path,
        [str(a["mol_id"][k]) for k in ks],
        [str(a["mol_smiles"][k]) for k in ks],
        [str(a["mol_source"][k]) for k in ks],
        heldout,
        [p for _, p in chosen],
        [str(s) for s in a["sampler_names"]],
        {"note": "cut from the shipped set by tests/test_evaluate_heldout_cli.py"},
    )


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    a = load_compact(default_dataset_path())
    chosen = _choose(a, held=2, training=1, max_geometries=2, max_atoms=20)
    assert [bool(a["mol_heldout"][k]) for k, _ in chosen] == [True, True, False]
    path = tmp_path_factory.mktemp("heldout") / "small.npz"
    _write_parts(path, a, chosen, [bool(a["mol_heldout"][k]) for k, _ in chosen])
    return path, [p for k, p in chosen if a["mol_heldout"][k]]


def test_evaluate_heldout_vertical_matches_the_calculator(small_set, capsys):
    path, heldout_parts = small_set
    model = default_model_path()
    assert main(["evaluate", str(model), str(path), "--heldout", "--vertical", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)

    calc = TransIPCalculator(model)
    from ase import Atoms

    force_errors, n_frames = [], 0
    gaps: dict[str, list[float]] = {"ionisation_energy": [], "electron_affinity": [], "singlet_triplet_gap": []}
    for part in heldout_parts:
        energies: dict[tuple[int, int, int], tuple[float, float]] = {}
        for i in range(len(part["energy"])):
            atoms = Atoms(numbers=part["numbers"], positions=part["positions"][i])
            charge, spin = int(part["charge"][i]), int(part["spin"][i])
            atoms.info.update(charge=charge, spin=spin)
            atoms.calc = calc
            force_errors.append(np.abs(atoms.get_forces() - part["forces"][i]).ravel())
            energies[(int(part["geometry"][i]), charge, spin)] = (atoms.get_potential_energy(), part["energy"][i])
            n_frames += 1
        for g in np.unique(part["geometry"]):
            e = {state: energies[(int(g), *state)] for state in STATES}
            for name, plus, minus in (
                ("ionisation_energy", (1, 2), (0, 1)),
                ("electron_affinity", (0, 1), (-1, 2)),
                ("singlet_triplet_gap", (0, 3), (0, 1)),
            ):
                gaps[name].append((e[plus][0] - e[minus][0]) - (e[plus][1] - e[minus][1]))

    assert result["frames"] == n_frames  # the training molecule is not evaluated
    expected_force_mae = 1000.0 * float(np.concatenate(force_errors).mean())
    np.testing.assert_allclose(result["overall"]["force_mae_meV_per_A"], expected_force_mae, rtol=1e-4)
    for name, errors in gaps.items():
        assert result["vertical"][name]["geometries"] == len(errors)
        np.testing.assert_allclose(result["vertical"][name]["mae_eV"], np.abs(errors).mean(), rtol=1e-4, atol=1e-5)


def test_evaluate_validation_side_is_the_trainers_split(tmp_path, capsys):
    """``--validation CONFIG`` evaluates exactly the molecules the trainer's split puts on the validation side:
    the same numbers as evaluating a file holding only those molecules, and never a held-out one."""
    from transip_md.train.data import read_frames
    from transip_md.train.heldout import partition

    a = load_compact(default_dataset_path())
    chosen = _choose(a, held=1, training=5, max_geometries=1, max_atoms=16)
    flags = [bool(a["mol_heldout"][k]) for k, _ in chosen]
    data = tmp_path / "five.npz"
    _write_parts(data, a, chosen, flags)
    model = default_model_path()
    config = tmp_path / "run.yaml"
    config.write_text(
        f"data: [{data}]\nval_fraction: 0.3\nsplit_seed: 3\nmodel:\n  elements: [1, 6, 7, 8, 9, 15, 16, 17, 35]\n"
    )

    frames, _ = read_frames(data)
    val_ids = partition(frames, 0.3, 3)[1]
    val_mols = {frames[i].mol_id for i in val_ids}
    heldout_mol = str(a["mol_id"][chosen[0][0]])
    assert val_mols and heldout_mol not in val_mols and len(val_mols) < 5

    assert main(["evaluate", str(model), "--validation", str(config), "--vertical", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    only_val = tmp_path / "validation_only.npz"
    _write_parts(only_val, a, [c for c in chosen if str(a["mol_id"][c[0]]) in val_mols], [False] * len(val_mols))
    assert main(["evaluate", str(model), str(only_val), "--vertical", "--json"]) == 0
    direct = json.loads(capsys.readouterr().out)

    assert result["side"] == "validation" and result["frames"] == len(val_ids) == direct["frames"]
    for key in ("energy_mae_meV_per_atom", "force_mae_meV_per_A"):
        np.testing.assert_allclose(result["overall"][key], direct["overall"][key], rtol=1e-6)
    assert result["vertical"].keys() == direct["vertical"].keys() and result["vertical"]
    for name in result["vertical"]:
        np.testing.assert_allclose(result["vertical"][name]["mae_eV"], direct["vertical"][name]["mae_eV"], rtol=1e-6)


def test_evaluate_validation_refuses_data_as_well(small_set, tmp_path):
    path, _ = small_set
    config = tmp_path / "run.yaml"
    config.write_text(f"data: [{path}]\nval_fraction: 0.5\n")
    with pytest.raises(ValueError, match="not both"):
        from transip_md.train.evaluate import evaluate_model

        evaluate_model(default_model_path(), [path], validation_of=config)


def test_evaluate_validation_side_of_a_config_with_its_own_validation_files(small_set, tmp_path):
    """A config with ``val_data``: its validation side is those files, all of their frames, held-out flag or not."""
    from transip_md.train.data import read_frames
    from transip_md.train.evaluate import evaluate_model

    path, _ = small_set
    config = tmp_path / "run.yaml"
    config.write_text(f"data: [{default_dataset_path()}]\nval_data: [{path}]\n")
    result = evaluate_model(default_model_path(), validation_of=config, symmetry_structures=0)
    direct = evaluate_model(default_model_path(), [path], symmetry_structures=0)
    assert result["frames"] == len(read_frames(path)[0]) == direct["frames"]
    np.testing.assert_allclose(result["overall"]["force_mae_meV_per_A"], direct["overall"]["force_mae_meV_per_A"])


def test_evaluate_training_side_is_the_trainers_split(small_set, tmp_path, capsys):
    """``--training CONFIG`` evaluates exactly the molecules the trainer trains on (never a held-out or a validation
    one; train-only files join it), and with data only the frames read from those files."""
    from transip_md.train.data import read_frames
    from transip_md.train.heldout import partition

    a = load_compact(default_dataset_path())
    chosen = _choose(a, held=1, training=5, max_geometries=1, max_atoms=16)
    data = tmp_path / "five.npz"
    _write_parts(data, a, chosen, [bool(a["mol_heldout"][k]) for k, _ in chosen])
    extra, _ = small_set  # two held-out molecules and one training molecule
    config = tmp_path / "run.yaml"
    config.write_text(
        f"data: [{data}]\ntrain_only_data: [{extra}]\nval_fraction: 0.3\nsplit_seed: 3\n"
        "model:\n  elements: [1, 6, 7, 8, 9, 15, 16, 17, 35]\n"
    )
    frames, _ = read_frames(data)
    train_ids, val_ids, held_ids = partition(frames, 0.3, 3)
    train_mols = {frames[i].mol_id for i in train_ids}
    assert val_ids and held_ids and len(train_mols) >= 2
    extra_frames, _ = read_frames(extra)
    extra_train = [f for f in extra_frames if not f.heldout]

    model = str(default_model_path())
    assert main(["evaluate", model, "--training", str(config), "--json", "--symmetry-structures", "0"]) == 0
    everything = json.loads(capsys.readouterr().out)
    assert everything["side"] == "training" and everything["frames"] == len(train_ids) + len(extra_train)

    assert main(["evaluate", model, str(data), "--training", str(config), "--json", "--symmetry-structures", "0"]) == 0
    result = json.loads(capsys.readouterr().out)
    only_train = tmp_path / "training_only.npz"
    _write_parts(only_train, a, [c for c in chosen if str(a["mol_id"][c[0]]) in train_mols], [False] * len(train_mols))
    assert main(["evaluate", model, str(only_train), "--json", "--symmetry-structures", "0"]) == 0
    direct = json.loads(capsys.readouterr().out)
    assert result["frames"] == len(train_ids) == direct["frames"]
    for key in ("energy_mae_meV_per_atom", "force_mae_meV_per_A"):
        np.testing.assert_allclose(result["overall"][key], direct["overall"][key], rtol=1e-6)

    # a sample of molecules: exactly that many, the same on every call, and all of the side when it asks for more
    from transip_md.train.evaluate import sample_molecules, training_side

    frames_all, ids, _ = training_side(config, only_from=[data])
    one = sample_molecules(frames_all, ids, 1, seed=0)
    assert len({frames_all[i].mol_id for i in one}) == 1 and set(one) <= set(ids)
    assert one == sample_molecules(frames_all, ids, 1, seed=0)
    assert one == [i for i in ids if frames_all[i].mol_id == frames_all[one[0]].mol_id]  # every frame of it
    assert sample_molecules(frames_all, ids, 100) == list(ids)
    from transip_md.train.evaluate import evaluate_model

    sampled = evaluate_model(model, [data], training_of=config, molecules=1, symmetry_structures=0)
    assert sampled["frames"] == len(one)


def test_evaluate_training_side_refuses_a_second_side_and_a_file_it_did_not_train_on(small_set, tmp_path):
    from transip_md.train.evaluate import evaluate_model

    path, _ = small_set
    config = tmp_path / "run.yaml"
    config.write_text(f"data: [{path}]\nval_fraction: 0.0\n")
    with pytest.raises(ValueError, match="choose one side"):
        evaluate_model(default_model_path(), training_of=config, heldout_only=True)
    with pytest.raises(ValueError, match="choose one side"):
        evaluate_model(default_model_path(), training_of=config, validation_of=config)
    with pytest.raises(
        ValueError, match="no frame of the run's training side was read from .*" + default_dataset_path().name
    ):
        evaluate_model(default_model_path(), [default_dataset_path()], training_of=config)
    with pytest.raises(ValueError, match="at least 1"):
        evaluate_model(default_model_path(), training_of=config, molecules=0)
