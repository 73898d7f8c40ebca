"""Inference speed-ups must not change the numbers: length bucketing, sequence padding, recompiling a file,
and the optional torch.compile path."""

from __future__ import annotations

import json

import numpy as np
import torch
from conftest import ethanol, make_model, water_box

from transip_md.model import eager_model, export, load_compiled, predict, recompile
from transip_md.model.evaluate import topology


def slab_with_vacuum():
    """A periodic water box with its upper half emptied: neighbour counts range from a few to dozens."""
    atoms = water_box(4)
    keep = [a.index for a in atoms if a.position[2] < 0.5 * atoms.cell[2, 2] or a.index % 7 == 0]
    return atoms[keep]


def test_bucketed_chunks_equal_one_pass_on_uneven_neighbourhoods(tmp_path):
    """Centres are chunked in order of neighbour count; energies must land on the right atoms."""
    model = make_model(4.0)
    atoms = slab_with_vacuum()
    counts = np.bincount(topology(model, atoms.positions, atoms.cell.array, atoms.pbc).src, minlength=len(atoms))
    assert counts.max() > 3 * max(counts.min(), 1), "neighbour counts not uneven enough to test bucketing"
    assert not np.all(np.diff(counts) >= 0), "atoms already in neighbour-count order: the permutation is untested"
    compiled = load_compiled(export(model, tmp_path / "m.pt"))
    ref = predict(model, atoms.numbers, atoms.positions, atoms.cell, atoms.pbc, virial=True, chunk_size=0)
    for m in (model, compiled):
        out = predict(m, atoms.numbers, atoms.positions, atoms.cell, atoms.pbc, virial=True, chunk_size=9)
        assert np.abs(out.energies - ref.energies).max() < 1e-10
        assert np.abs(out.forces - ref.forces).max() < 1e-10
        assert np.abs(out.virial - ref.virial).max() < 1e-9


def test_sequence_padding_changes_nothing(tmp_path):
    """Padding neighbourhoods to a multiple of 8 tokens (the torch.compile setting) is exact."""
    model = make_model(4.0)
    compiled = load_compiled(export(model, tmp_path / "m.pt"))
    atoms = water_box(2)
    ref = predict(compiled, atoms.numbers, atoms.positions, atoms.cell, atoms.pbc, chunk_size=5)
    compiled.module.sequence_multiple = 8
    assert compiled.module.sequence_multiple == 8
    out = predict(compiled, atoms.numbers, atoms.positions, atoms.cell, atoms.pbc, chunk_size=5)
    assert np.abs(out.energies - ref.energies).max() < 1e-10
    assert np.abs(out.forces - ref.forces).max() < 1e-10


def test_recompile_keeps_weights_metadata_and_numbers(tmp_path):
    model = make_model(4.0)
    source = export(model, tmp_path / "old.pt", {"note": "original"})
    out = recompile(source, tmp_path / "new.pt")
    old, new = load_compiled(source), load_compiled(out)
    prov = new.metadata["provenance"]
    assert prov["note"] == "original"
    assert prov["created"] == old.metadata["provenance"]["created"]
    assert prov["recompiled"]["from_sha256"] == old.sha256()
    assert {k: v for k, v in new.metadata.items() if k != "provenance"} == json.loads(
        json.dumps({k: v for k, v in old.metadata.items() if k != "provenance"})
    )
    rebuilt = eager_model(old)
    for name, tensor in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[name], tensor), name
    atoms = water_box(2)
    a = predict(old, atoms.numbers, atoms.positions, atoms.cell, atoms.pbc)
    b = predict(new, atoms.numbers, atoms.positions, atoms.cell, atoms.pbc)
    assert abs(a.energy - b.energy) < 1e-10 and np.abs(a.forces - b.forces).max() < 1e-10


def test_torch_compile_flag_gives_the_files_numbers(tmp_path):
    """TransIPCalculator(compile=True) runs torch.compile (C++ codegen on CPU) and matches TorchScript."""
    from transip_md.ase import TransIPCalculator

    path = export(make_model(4.0), tmp_path / "m.pt")
    atoms = ethanol()
    atoms.info.update(charge=1, spin=2)
    ref = atoms.copy()
    ref.calc = TransIPCalculator(path)
    fast = atoms.copy()
    calc = TransIPCalculator(path, compile=True)
    assert calc.evaluator is not calc.model  # the flag really switches the evaluator
    fast.calc = calc
    assert abs(fast.get_potential_energy() - ref.get_potential_energy()) < 1e-9
    np.testing.assert_allclose(fast.get_forces(), ref.get_forces(), atol=1e-9)
    assert np.abs(ref.get_forces()).max() > 1e-2


def test_openmm_python_backend_torch_compile_flag(tmp_path):
    """TransIPForce(..., torch_compile=True) (python backend) gives the TorchScript numbers in kJ/mol, nm."""
    import openmm
    import pytest

    from transip_md.ase import TransIPCalculator
    from transip_md.openmm import TransIPForce
    from transip_md.units import ANGSTROM_TO_NM, EV_PER_A_TO_KJ_PER_MOL_NM, EV_TO_KJ_PER_MOL

    path = str(export(make_model(4.0), tmp_path / "m.pt"))
    atoms = ethanol()
    system = openmm.System()
    for m in atoms.get_masses():
        system.addParticle(m)
    with pytest.raises(ValueError, match="torch_compile"):
        TransIPForce(path, atomic_numbers=atoms.numbers.tolist(), backend="torch", torch_compile=True)
    system.addForce(TransIPForce(path, atomic_numbers=atoms.numbers.tolist(), backend="auto", torch_compile=True))
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.0005), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(atoms.positions * ANGSTROM_TO_NM)
    state = ctx.getState(getEnergy=True, getForces=True)
    energy = state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
    forces = state.getForces(asNumpy=True).value_in_unit(openmm.unit.kilojoule_per_mole / openmm.unit.nanometer)
    atoms.calc = TransIPCalculator(path)
    assert abs(energy - atoms.get_potential_energy() * EV_TO_KJ_PER_MOL) < 1e-7
    np.testing.assert_allclose(forces, atoms.get_forces() * EV_PER_A_TO_KJ_PER_MOL_NM, atol=1e-7)
