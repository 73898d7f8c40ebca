"""Geometry samplers (transip_md/train/sampling.py), each on one small molecule, labelled with GFN2-xTB."""

import numpy as np
import pytest

from transip_md.train.label import SAMPLERS, LabelConfig, Labeller, MoleculeFrames, parity_ok, sample_molecule
from transip_md.train.molecules import Molecule
from transip_md.train.sampling import (
    ClassicalSurface,
    SamplingError,
    compress_pair,
    covalent_radii,
    embed,
    matching_bonds,
    min_contact_ratio,
    scale_bond,
    thermal_md,
)

pytest.importorskip("tblite")


@pytest.fixture(scope="module")
def ethanol():
    mol, ff = embed("CCO", n_conformers=2, seed=1)
    return mol, np.array([a.GetAtomicNum() for a in mol.GetAtoms()])


def _check_labelled(numbers, pos, state=(0, 1)):
    energy, forces = Labeller(LabelConfig(max_force=1e9))(numbers, pos, *state)
    assert np.isfinite(energy) and np.isfinite(forces).all() and forces.shape == pos.shape
    assert parity_ok(numbers, *state)
    return energy, forces


def test_embed_gives_relaxed_mmff_conformers(ethanol):
    mol, numbers = ethanol
    assert mol.GetNumConformers() == 2 and len(numbers) == 9
    surface = ClassicalSurface(mol)
    assert surface.name == "MMFF94"
    pos = mol.GetConformer(0).GetPositions()
    assert np.abs(surface.forces(pos)).max() < 0.05  # kcal/mol/Å: a minimum
    with pytest.raises(SamplingError) as err:
        embed("C1CC", 1, 0)
    assert err.value.cause == "unparsable_smiles"


def test_classical_forces_match_finite_differences(ethanol):
    """rdkit's CalcGrad reuses terms of the last CalcEnergy: forces must still be -dE/dx at any point."""
    mol, _ = ethanol
    surface = ClassicalSurface(mol)
    rng = np.random.default_rng(3)
    base = mol.GetConformer(0).GetPositions()
    x1, x2 = base + 0.05 * rng.normal(size=base.shape), base + 0.05 * rng.normal(size=base.shape)
    surface.forces(x1)
    f = surface.forces(x2)
    num = np.zeros_like(x2)
    for i in range(len(x2)):
        for k in range(3):
            d = np.zeros_like(x2)
            d[i, k] = 1e-5
            num[i, k] = -(surface.energy(x2 + d) - surface.energy(x2 - d)) / 2e-5
    assert np.abs(f - num).max() < 1e-4


def test_thermal_md_heats_the_molecule_and_keeps_bonds(ethanol):
    mol, numbers = ethanol
    surface = ClassicalSurface(mol)
    pos0 = mol.GetConformer(0).GetPositions()
    rng = np.random.default_rng(0)
    hot = [surface.energy(thermal_md(surface, pos0, 1200.0, 300, rng)) for _ in range(4)]
    cold = [surface.energy(thermal_md(surface, pos0, 300.0, 300, rng)) for _ in range(4)]
    # 27 degrees of freedom, potential energy ~ (3N-6)/2 kT: about 5 kcal/mol at 300 K, 20 at 1200 K.
    assert np.mean(hot) > np.mean(cold) + 5.0
    x = thermal_md(surface, pos0, 1200.0, 300, rng)
    assert 0.8 < min_contact_ratio(numbers, x) < 1.3  # no atom fused, no bond broken
    _check_labelled(numbers, x)


def test_compress_pair_makes_a_short_contact(ethanol):
    mol, numbers = ethanol
    pos = mol.GetConformer(0).GetPositions()
    rng = np.random.default_rng(0)
    for _ in range(3):
        d = compress_pair(mol, pos, rng, 0.6, 0.8)
        i, j = d.atoms
        rc = covalent_radii(numbers)
        dist = np.linalg.norm(d.positions[i] - d.positions[j])
        assert 1 in (numbers[i], numbers[j])
        assert dist == pytest.approx(d.ratio * (rc[i] + rc[j]), rel=1e-9)
        assert 0.6 <= d.ratio <= 0.8 and min_contact_ratio(numbers, d.positions) <= 0.8
        assert not mol.GetBondBetweenAtoms(i, j)
    energy, forces = _check_labelled(numbers, d.positions)
    e0, _ = _check_labelled(numbers, pos)
    assert energy > e0 + 1.0  # the repulsive wall: several eV above the minimum
    assert np.linalg.norm(forces[[i, j]], axis=1).max() > 5.0


@pytest.mark.parametrize("lo,hi", [(0.7, 0.8), (1.2, 1.8)])
def test_scale_bond_moves_one_side_rigidly(ethanol, lo, hi):
    mol, numbers = ethanol
    pos = mol.GetConformer(0).GetPositions()
    d = scale_bond(mol, pos, np.random.default_rng(5), lo, hi)
    a, b = d.atoms
    assert mol.GetBondBetweenAtoms(a, b) is not None and lo <= d.ratio <= hi
    new_len = np.linalg.norm(d.positions[b] - d.positions[a])
    assert new_len == pytest.approx(d.ratio * np.linalg.norm(pos[b] - pos[a]), rel=1e-9)
    moved = np.flatnonzero(np.abs(d.positions - pos).max(axis=1) > 1e-12)
    assert 0 < len(moved) <= len(numbers) // 2 + 1  # the smaller side moved
    shifts = d.positions[moved] - pos[moved]
    assert np.allclose(shifts, shifts[0])  # rigidly
    _check_labelled(numbers, d.positions, (0, 3))


def test_scale_bond_stretches_the_bond_it_is_given(ethanol):
    mol, numbers = ethanol
    pos = mol.GetConformer(0).GetPositions()
    co = next((b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds() if b.GetEndAtom().GetSymbol() == "O")
    for seed in range(5):  # every draw stretches this bond, none another
        d = scale_bond(mol, pos, np.random.default_rng(seed), 1.3, 1.4, bond=co)
        assert set(d.atoms) == set(co)
        new_len = np.linalg.norm(d.positions[co[1]] - d.positions[co[0]])
        assert new_len == pytest.approx(d.ratio * np.linalg.norm(pos[co[1]] - pos[co[0]]), rel=1e-9)
    with pytest.raises(ValueError, match="not bonded"):
        scale_bond(mol, pos, np.random.default_rng(0), 1.3, 1.4, bond=(0, 2))  # C...O of C-C-O


def test_matching_bonds_finds_the_soft_bonds():
    from rdkit import Chem

    from transip_md.train.molecules import SOFT_BONDS

    mol = Chem.AddHs(Chem.MolFromSmiles("BrCc1ccc(C(F)(F)F)cc1"))
    found = matching_bonds(mol, SOFT_BONDS)
    symbols = sorted("".join(sorted(mol.GetAtomWithIdx(i).GetSymbol() for i in b)) for b in found)
    assert symbols == ["BrC", "CF", "CF", "CF"]
    assert matching_bonds(mol, ["[#16]-[F]"]) == []
    with pytest.raises(ValueError, match="two-atom"):
        matching_bonds(mol, ["[#6]-[#6]-[#6]"])


def test_stretch_target_frames_come_last_and_stretch_the_target_bond():
    """The stretch_target frames stretch a matching bond, one per stratum of target_stretch, and leave every
    other frame of the molecule unchanged (their own random stream)."""
    from transip_md.train.molecules import SOFT_BONDS

    molecule = Molecule("t-br", "BrCc1ccccc1", "test", frozenset({"C", "H", "Br"}), 15)
    plain_cfg = LabelConfig(md_steps=50)
    plain = sample_molecule(3, molecule, plain_cfg, Labeller(plain_cfg))
    cfg = LabelConfig(md_steps=50, target_bonds=SOFT_BONDS, target_stretch=(1.1, 1.5), target_frames=4)
    out = sample_molecule(3, molecule, cfg, Labeller(cfg))
    n = len(plain.energy)
    assert np.array_equal(out.energy[:n], plain.energy) and all(
        np.array_equal(a, b) for a, b in zip(out.positions[:n], plain.positions, strict=True)
    )
    target = [k for k, s in enumerate(out.sampler) if SAMPLERS[s] == "stretch_target"]
    assert target == list(range(n, len(out.energy))) and out.stats["frames_stretch_target"] == len(target) == 5
    ground = [k for k in target if (out.charge[k], out.spin[k]) == (0, 1)]
    ratios = [out.param[k] for k in ground]
    assert len(ground) == 4 and all(lo <= r <= lo + 0.1 for r, lo in zip(ratios, (1.1, 1.2, 1.3, 1.4), strict=True))
    br = int(np.flatnonzero(out.numbers == 35)[0])
    carbons = np.flatnonzero(out.numbers == 6)
    c = int(carbons[np.argmin(np.linalg.norm(plain.positions[0][carbons] - plain.positions[0][br], axis=1))])
    c_br = [float(np.linalg.norm(out.positions[k][br] - out.positions[k][c])) for k in ground]
    assert c_br[-1] > 1.4 * 1.85 and c_br == sorted(c_br)  # the C-Br bond (~1.95 Å at rest) is the one stretched
    # A molecule without a target bond: counted, nothing added.
    none = sample_molecule(3, Molecule("t-o", "CC=O", "test", frozenset("CHO"), 7), cfg, Labeller(cfg))
    assert none.stats["no_target_bond"] == 1 and "stretch_target" not in {SAMPLERS[s] for s in none.sampler}


def test_sample_molecule_plan_states_and_geometry_ids():
    cfg = LabelConfig(md_steps=50)
    out = sample_molecule(0, Molecule("t-0", "CC=O", "test", frozenset("CHO"), 7), cfg, Labeller(cfg))
    assert isinstance(out, MoleculeFrames) and out.stats["frames"] == len(out.energy) >= 12
    assert {SAMPLERS[s] for s in out.sampler} == {"thermal", "compress_pair", "compress_bond", "stretch_bond", "relax"}
    assert set(zip(out.charge, out.spin, strict=True)) == {(0, 1), (1, 2), (-1, 2), (0, 3)}
    assert all(parity_ok(out.numbers, q, m) for q, m in zip(out.charge, out.spin, strict=True))
    assert all(np.isfinite(f).all() for f in out.forces) and np.isfinite(out.energy).all()
    # The first geometry is labelled in all four states (vertical): same positions, one geometry id.
    first = [k for k, g in enumerate(out.geometry) if g == 0]
    assert len(first) == 4 and all(np.array_equal(out.positions[k], out.positions[first[0]]) for k in first)
    e = {(out.charge[k], out.spin[k]): out.energy[k] for k in first}
    assert e[(1, 2)] - e[(0, 1)] > 5.0  # vertical ionisation energy of acetaldehyde (GFN2: ~10 eV)
    # Relax frames: same state as their starting frame, energy goes down along the steps.
    relax = [k for k, s in enumerate(out.sampler) if SAMPLERS[s] == "relax"]
    start = relax[0] - 1
    energies = [out.energy[start]] + [out.energy[k] for k in relax]
    assert len({(out.charge[k], out.spin[k]) for k in [start, *relax]}) == 1
    assert energies[-1] < energies[0]
