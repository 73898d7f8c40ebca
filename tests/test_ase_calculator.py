"""The ASE calculator: properties, stress, and clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.md.verlet import VelocityVerlet
from conftest import ethanol, water_box

from transip_md.ase import TransIPCalculator
from transip_md.model import predict
from transip_md.validation import InputError


def test_properties_molecule(global_model_path):
    atoms = ethanol()
    atoms.info.update(charge=1, spin=2)
    calc = TransIPCalculator(global_model_path)
    atoms.calc = calc
    e = atoms.get_potential_energy()
    ref = predict(calc.model, atoms.numbers, atoms.positions, charge=1, multiplicity=2)
    assert e == pytest.approx(ref.energy, rel=1e-14, abs=1e-12)  # the same evaluation
    assert atoms.get_potential_energies().sum() == pytest.approx(e, abs=1e-9)
    np.testing.assert_allclose(atoms.get_forces(), ref.forces, rtol=0, atol=1e-12)
    assert calc.get_property("free_energy", atoms) == e


def test_stress_matches_strain_derivative(local_model_path):
    atoms = water_box(2)
    atoms.calc = TransIPCalculator(local_model_path)
    stress = atoms.get_stress(voigt=False)
    vol = atoms.get_volume()
    h = 1e-5
    fd = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            e = []
            for sign in (1, -1):
                eps = np.zeros((3, 3))
                eps[a, b] += 0.5 * sign * h
                eps[b, a] += 0.5 * sign * h
                strained = atoms.copy()
                strained.calc = atoms.calc
                strained.set_cell(atoms.cell @ (np.eye(3) + eps), scale_atoms=True)
                e.append(strained.get_potential_energy())
            fd[a, b] = (e[0] - e[1]) / (2 * h) / vol
    assert np.abs(fd).max() > 1e-4
    np.testing.assert_allclose(stress, fd, atol=1e-7)


def test_short_nve_runs(local_model_path):
    atoms = water_box(2)
    atoms.calc = TransIPCalculator(local_model_path)
    VelocityVerlet(atoms, timestep=0.1 * 1e-15 * 1e15 * 0.09822694788464063).run(5)  # ~0.1 fs in ASE units
    assert np.isfinite(atoms.get_potential_energy())


def _expect(model_path, atoms, match):
    atoms.calc = TransIPCalculator(model_path)
    with pytest.raises(InputError, match=match):
        atoms.get_potential_energy()


def test_unknown_element_names_the_atom(global_model_path):
    atoms = ethanol()
    atoms.numbers[4] = 9
    _expect(global_model_path, atoms, r"atom 4: element F is not supported")


def test_impossible_charge_spin(global_model_path):
    atoms = ethanol()  # 26 electrons
    atoms.info["spin"] = 2
    _expect(global_model_path, atoms, r"26 electrons .* multiplicity 2")
    atoms = ethanol()
    atoms.info.update(charge=1, spin=1)
    _expect(global_model_path, atoms, r"25 electrons \(charge 1\) cannot have spin multiplicity 1")


def test_nan_position_names_the_atom(global_model_path):
    atoms = ethanol()
    atoms.positions[2, 1] = np.nan
    _expect(global_model_path, atoms, rf"atom 2 \({atoms.get_chemical_symbols()[2]}\): position is not finite")


def test_overlapping_atoms(global_model_path, local_model_path):
    atoms = ethanol()
    atoms.positions[5] = atoms.positions[1] + [0.05, 0, 0]
    s = atoms.get_chemical_symbols()
    _expect(global_model_path, atoms, rf"atoms 1 \({s[1]}\) and 5 \({s[5]}\) overlap: distance 0.0500 Å")
    box = water_box(2)
    box.positions[0] = box.positions[3] + box.cell[0] + [0.0, 0.03, 0.0]  # overlap through the boundary
    _expect(local_model_path, box, r"overlap")


def test_global_model_refuses_periodic_system(global_model_path):
    _expect(global_model_path, water_box(2), "global \\(all-pairs\\) model cannot run a periodic system")


def test_isolated_atom_and_empty_neighbourhood(local_model_path):
    atoms = Atoms("O", positions=[[0, 0, 0]])
    atoms.calc = TransIPCalculator(local_model_path)
    assert np.isfinite(atoms.get_potential_energy())
    np.testing.assert_array_equal(atoms.get_forces(), np.zeros((1, 3)))


def test_charge_spin_change_is_not_served_from_the_cache(global_model_path):
    """Issue 14 #1: only atoms.info changes -> a new calculation (and the parity check), not the cached energy."""
    atoms = ethanol()
    atoms.calc = TransIPCalculator(global_model_path)
    e_neutral = atoms.get_potential_energy()
    atoms.info.update(charge=1, spin=2)
    e_cation = atoms.get_potential_energy()
    fresh = atoms.copy()
    fresh.calc = TransIPCalculator(global_model_path)
    assert e_cation == pytest.approx(fresh.get_potential_energy(), abs=1e-9)
    assert abs(e_cation - e_neutral) > 1e-3
    atoms.info.update(charge=0, spin=2)
    with pytest.raises(InputError, match="impossible charge/spin"):
        atoms.get_potential_energy()


def test_far_atom_is_refused_before_the_neighbour_list(global_model_path, local_model_path):
    """Issue 14 #7: an atom 2e5 Å away gave SIGFPE inside the neighbour-list library; now a named error."""
    for path in (global_model_path, local_model_path):
        atoms = ethanol()
        atoms.positions[0, 0] = 2e5
        _expect(path, atoms, "further than 10000 Å from the origin")
    atoms = water_box(2)
    atoms.positions[0] += 5e3 * atoms.cell[0]
    _expect(local_model_path, atoms, "cell lengths from the origin")


def test_flat_periodic_cell_is_refused(local_model_path):
    atoms = water_box(2)
    atoms.cell[2] = atoms.cell[0]
    _expect(local_model_path, atoms, r"periodic atoms need a cell with non-zero volume")
