"""Inference-time symmetrisation (transip_md.model.symmetrize): groups, exact invariance, conservative forces."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import ethanol, make_model, water_box

from transip_md.model import load_compiled, predict, symmetry_error
from transip_md.model.symmetrize import (
    GROUP_ORDERS,
    SymmetrizedTransIP,
    export_symmetrized,
    frame_rotations,
    group_rotations,
    symmetrize,
)

torch.set_num_threads(1)


@pytest.mark.parametrize("group", sorted(GROUP_ORDERS))
def test_groups_are_closed_sets_of_proper_rotations(group):
    rots = group_rotations(group)
    assert rots.shape == (GROUP_ORDERS[group], 3, 3)
    eye = torch.eye(3, dtype=torch.float64)
    keys = {tuple(r.round(decimals=6).flatten().tolist()) for r in rots}
    assert len(keys) == len(rots)
    for r in rots:
        torch.testing.assert_close(r @ r.T, eye, rtol=0, atol=1e-12)
        assert abs(float(torch.linalg.det(r)) - 1.0) < 1e-12
    for a in rots[:5]:
        for b in rots:
            assert tuple((a @ b).round(decimals=6).flatten().tolist()) in keys


def _rotate(atoms, rot):
    out = atoms.copy()
    centre = atoms.get_center_of_mass()
    out.positions = (atoms.positions - centre) @ rot.T + centre
    return out


@pytest.mark.parametrize("cutoff", [None, 4.0])
def test_exactly_invariant_under_the_frame_group(cutoff):
    """E_sym(Q x) = E_sym(x) and F_sym(Q x) = Q F_sym(x) for every Q in C^T G C (float64 round-off)."""
    model = make_model(cutoff)
    group = group_rotations("octahedral")
    frames = frame_rotations("octahedral", seed=3)
    c = (group[0].T @ frames[0]).numpy()  # R_0 = g_0 C
    wrapped = symmetrize(model, "octahedral", seed=3)
    atoms = ethanol()
    ref = predict(wrapped, atoms.numbers, atoms.positions)
    for g in group[::5].numpy():
        q = c.T @ g @ c
        moved = _rotate(atoms, q)
        p = predict(wrapped, moved.numbers, moved.positions)
        assert abs(p.energy - ref.energy) < 1e-9
        np.testing.assert_allclose(p.forces, ref.forces @ q.T, rtol=0, atol=1e-9)
    # a generic rotation is not in the group: the wrapped model is not exactly invariant under it
    q = frame_rotations("octahedral", seed=11)[0].numpy()
    moved = _rotate(atoms, q)
    assert abs(predict(wrapped, moved.numbers, moved.positions).energy - ref.energy) > 1e-7


@pytest.mark.parametrize("cutoff", [None, 4.0])
def test_forces_are_minus_the_energy_gradient(cutoff):
    wrapped = symmetrize(make_model(cutoff), "tetrahedral", seed=0)
    atoms = ethanol()
    p = predict(wrapped, atoms.numbers, atoms.positions)
    h = 1e-5
    rng = np.random.default_rng(0)
    for i, c in zip(rng.integers(0, len(atoms), 4), rng.integers(0, 3, 4), strict=True):
        plus = atoms.positions.copy()
        minus = atoms.positions.copy()
        plus[i, c] += h
        minus[i, c] -= h
        fd = -(predict(wrapped, atoms.numbers, plus).energy - predict(wrapped, atoms.numbers, minus).energy) / (2 * h)
        assert abs(fd - p.forces[i, c]) < 1e-6 * max(1.0, abs(fd))


def test_energy_is_the_frame_average_and_chunks_agree():
    """The wrapper equals the explicit average of the model over rotated copies; chunked = unchunked."""
    model = make_model(4.0)
    frames = frame_rotations("tetrahedral", seed=1)
    wrapped = symmetrize(model, "tetrahedral", seed=1)
    atoms = water_box(2)
    p = predict(wrapped, atoms.numbers, atoms.positions, atoms.cell, atoms.pbc, chunk_size=0)
    energies, forces = [], []
    for r in frames.numpy():
        q = predict(model, atoms.numbers, atoms.positions @ r.T, np.asarray(atoms.cell) @ r.T, atoms.pbc)
        energies.append(q.energy)
        forces.append(q.forces @ r)
    assert abs(p.energy - np.mean(energies)) < 1e-9
    np.testing.assert_allclose(p.forces, np.mean(forces, axis=0), rtol=0, atol=1e-9)
    chunked = predict(wrapped, atoms.numbers, atoms.positions, atoms.cell, atoms.pbc, chunk_size=5)
    assert abs(chunked.energy - p.energy) < 1e-9
    np.testing.assert_allclose(chunked.forces, p.forces, rtol=0, atol=1e-9)


@pytest.mark.parametrize("cutoff", [None, 4.0])
def test_smaller_symmetry_error_than_the_bare_model(cutoff):
    """A model whose orientation dependence is smooth (rotary wavelengths 10-20 Å): the octahedral average
    removes most of it (measured: 20.6 -> 0.5 meV global, 10.8 -> 0.13 meV local, 12 random rotations)."""
    model = make_model(cutoff, rope_min_wavelength=10.0, rope_max_wavelength=20.0)
    atoms = ethanol()
    bare = symmetry_error(model, atoms, n_rotations=12)
    wrapped = symmetry_error(symmetrize(model, "octahedral", seed=0), atoms, n_rotations=12)
    assert bare["energy_std_meV"] > 1.0
    assert wrapped["energy_std_meV"] < 0.2 * bare["energy_std_meV"]
    assert wrapped["force_rms_meV_per_A"] < 0.2 * bare["force_rms_meV_per_A"]


def test_export_load_round_trip(tmp_path, local_model_path):
    compiled = load_compiled(local_model_path)
    out = export_symmetrized(compiled, tmp_path / "sym.pt", "tetrahedral", seed=2)
    loaded = load_compiled(out)
    assert loaded.metadata["symmetrize"] == {"group": "tetrahedral", "frames": 12, "seed": 2}
    assert loaded.cutoff == compiled.cutoff and loaded.elements == compiled.elements
    atoms = ethanol()
    a = predict(loaded, atoms.numbers, atoms.positions)
    b = predict(symmetrize(compiled, "tetrahedral", seed=2), atoms.numbers, atoms.positions)
    assert abs(a.energy - b.energy) < 1e-9
    np.testing.assert_allclose(a.forces, b.forces, rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="already symmetrised"):
        symmetrize(loaded)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown rotation group"):
        group_rotations("cubic")
    with pytest.raises(ValueError, match="shape"):
        SymmetrizedTransIP(make_model(None), torch.zeros(3, 3))


def test_export_symmetrize_through_the_cli(tmp_path, capsys, local_model_path):
    """`transip-md export --symmetrize GROUP MODEL -o OUT` writes symmetrize(...)'s model: same energy and forces,
    invariant under a rotation of the frame group C^T G C."""
    from transip_md.cli import main

    out = tmp_path / "sym.pt"
    argv = ["export", "--symmetrize", "octahedral", "--symmetrize-seed", "5", str(local_model_path), "-o", str(out)]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["wrote"] == str(out)
    loaded = load_compiled(out)
    assert loaded.metadata["symmetrize"] == {"group": "octahedral", "frames": 24, "seed": 5}
    atoms = ethanol()
    a = predict(loaded, atoms.numbers, atoms.positions)
    b = predict(symmetrize(load_compiled(local_model_path), "octahedral", seed=5), atoms.numbers, atoms.positions)
    assert abs(a.energy - b.energy) < 1e-9
    np.testing.assert_allclose(a.forces, b.forces, rtol=0, atol=1e-9)
    c = (group_rotations("octahedral")[0].T @ frame_rotations("octahedral", seed=5)[0]).numpy()  # R_0 = g_0 C
    q = c.T @ group_rotations("octahedral")[7].numpy() @ c
    assert np.abs(q - np.eye(3)).max() > 0.1  # a real rotation, not the identity
    moved = _rotate(atoms, q)
    assert abs(predict(loaded, moved.numbers, moved.positions).energy - a.energy) < 1e-9


def test_export_symmetrize_cli_seed_none_and_user_errors(tmp_path, capsys, local_model_path):
    from transip_md.cli import main

    out = tmp_path / "axis.pt"
    argv = ["export", "--symmetrize", "tetrahedral", "--symmetrize-seed", "none", str(local_model_path), "-o", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    assert load_compiled(out).metadata["symmetrize"] == {"group": "tetrahedral", "frames": 12, "seed": None}
    errors = [
        (["--symmetrize", "octahedral", str(local_model_path)], "-o"),  # no output
        (["--symmetrize", "octahedral", "-o", str(tmp_path / "x.pt")], "model file to symmetrise"),
        (["--symmetrize", "octahedral", str(out), "-o", str(tmp_path / "x.pt")], "already symmetrised"),
        (["--symmetrize", "octahedral", str(tmp_path / "missing.pt"), "-o", str(tmp_path / "x.pt")], "not found"),
        (["--random", "--symmetrize-seed", "3", str(tmp_path / "x.pt")], "--symmetrize-seed"),
        (["--recompile", str(local_model_path), "--symmetrize", "octahedral", "-o", str(tmp_path / "x.pt")], "one"),
    ]
    for args, needle in errors:
        with pytest.raises(SystemExit) as exc:
            main(["export", *args])
        assert exc.value.code != 0
        assert needle in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_symmetrised_file_cannot_be_rebuilt_as_an_eager_model(tmp_path, local_model_path):
    """recompile / eager_model / torch_compiled refuse a symmetrised file clearly, naming it."""
    from transip_md.model import ModelFileError, eager_model, recompile
    from transip_md.model.accelerate import torch_compiled

    out = export_symmetrized(load_compiled(local_model_path), tmp_path / "sym.pt", "tetrahedral", seed=0)
    loaded = load_compiled(out)
    for rebuild in (
        lambda: eager_model(loaded),
        lambda: torch_compiled(loaded),
        lambda: recompile(out, tmp_path / "r"),
    ):
        with pytest.raises(ModelFileError, match="symmetrised wrapper") as exc:
            rebuild()
        assert str(out) in str(exc.value) and "base model" in str(exc.value)
    assert not (tmp_path / "r").exists()
    eager_model(load_compiled(local_model_path))  # the base file still rebuilds


def test_written_model_files_get_the_usual_permissions(tmp_path, local_model_path):
    """export and export_symmetrized rely on atomic_write for the permissions (not mkstemp's 0600)."""
    import os

    from transip_md.model import export

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    usual = os.stat(plain).st_mode & 0o777
    base = export(make_model(4.0), tmp_path / "sub" / "base.pt")
    sym = export_symmetrized(load_compiled(base), tmp_path / "new" / "dir" / "sym.pt", "tetrahedral")
    for path in (base, sym):
        assert os.stat(path).st_mode & 0o777 == usual
