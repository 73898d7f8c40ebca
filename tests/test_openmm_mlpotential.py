"""openmm-ml potential 'transip': createSystem and createMixedSystem (mechanical embedding) energy split."""

from __future__ import annotations

import numpy as np
import openmm
import openmm.app as app
import pytest
from openmm import unit
from openmmml import MLPotential

from transip_md.ase import TransIPCalculator
from transip_md.model import TransIPConfig, export, random_model
from transip_md.units import ANGSTROM_TO_NM, EV_TO_KJ_PER_MOL

KJ = unit.kilojoule_per_mole
ETHANOL = [
    ("C", [-0.0011, -0.0140, 0.0000]),
    ("C", [1.5120, -0.0010, 0.0000]),
    ("O", [1.9550, 1.3470, 0.0000]),
    ("H", [-0.3910, 1.0070, 0.0000]),
    ("H", [-0.3830, -0.5280, 0.8850]),
    ("H", [-0.3830, -0.5280, -0.8850]),
    ("H", [1.8850, -0.5190, 0.8870]),
    ("H", [1.8850, -0.5190, -0.8870]),
    ("H", [2.9140, 1.3210, 0.0000]),
]
ETHANOL_BONDS = [(0, 1), (1, 2), (0, 3), (0, 4), (0, 5), (1, 6), (1, 7), (2, 8)]
WATERS = [[4.5, 0.0, 0.0], [0.0, 4.0, 1.0], [2.0, -3.0, 2.5]]
CHARGES = {"C": -0.1, "O": -0.5, "H": 0.1}  # ethanol: 2(-0.1) - 0.5 + 6(0.1) = -0.1 -> fix on the H of OH
LJ = {"C": (0.34, 0.36), "O": (0.30, 0.65), "H": (0.25, 0.06)}  # sigma nm, epsilon kJ/mol


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    cfg = TransIPConfig(cutoff=None, dtype="float64", d_model=32, n_heads=2, elements=[1, 6, 8])
    return str(export(random_model(cfg, seed=21), tmp_path_factory.mktemp("mlp") / "global.pt"))


def build():
    """Topology + positions (nm) of ethanol and three waters, and a hand-built MM System (no cutoff)."""
    top = app.Topology()
    chain = top.addChain()
    res = top.addResidue("ETH", chain)
    atoms = [top.addAtom(f"{s}{i}", app.Element.getBySymbol(s), res) for i, (s, _) in enumerate(ETHANOL)]
    for i, j in ETHANOL_BONDS:
        top.addBond(atoms[i], atoms[j])
    pos = [p for _, p in ETHANOL]
    for w in WATERS:
        r = top.addResidue("HOH", chain)
        o = top.addAtom("O", app.Element.getBySymbol("O"), r)
        h1 = top.addAtom("H1", app.Element.getBySymbol("H"), r)
        h2 = top.addAtom("H2", app.Element.getBySymbol("H"), r)
        top.addBond(o, h1)
        top.addBond(o, h2)
        pos += [w, [w[0] + 0.9572, w[1], w[2]], [w[0] - 0.24, w[1] + 0.927, w[2]]]
    pos_nm = np.array(pos) * ANGSTROM_TO_NM
    return top, pos_nm


def mm_system(top, drop_ml_internal=False):
    """Bonds + Coulomb/LJ (exclusions for 1-2 pairs); optionally without ethanol's internal terms."""
    ml = set(range(len(ETHANOL)))
    system = openmm.System()
    nb = openmm.NonbondedForce()
    nb.setNonbondedMethod(openmm.NonbondedForce.NoCutoff)
    bonds = openmm.HarmonicBondForce()
    for atom in top.atoms():
        system.addParticle(atom.element.mass)
        sym = atom.element.symbol
        q = CHARGES[sym] if atom.residue.name == "ETH" else (-0.834 if sym == "O" else 0.417)
        if atom.residue.name == "ETH" and atom.index == 8:
            q += 0.1
        nb.addParticle(q, *LJ[sym])
    for b in top.bonds():
        i, j = b[0].index, b[1].index
        nb.addException(i, j, 0.0, 1.0, 0.0)
        if not (drop_ml_internal and i in ml and j in ml):
            bonds.addBond(i, j, 0.1, 200000.0)
    if drop_ml_internal:
        for i in ml:
            for j in ml:
                if i < j and not any({i, j} == {b[0].index, b[1].index} for b in top.bonds()):
                    nb.addException(i, j, 0.0, 1.0, 0.0)
    system.addForce(nb)
    system.addForce(bonds)
    return system


def energy(system, pos_nm, groups=-1):
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(pos_nm)
    return ctx.getState(getEnergy=True, groups=groups).getPotentialEnergy().value_in_unit(KJ)


def ml_reference(model_path, pos_nm, charge=0, multiplicity=1):
    from ase import Atoms

    atoms = Atoms([s for s, _ in ETHANOL], positions=pos_nm[: len(ETHANOL)] * 10)
    atoms.info.update(charge=charge, spin=multiplicity)
    atoms.calc = TransIPCalculator(model_path)
    return atoms.get_potential_energy() * EV_TO_KJ_PER_MOL


def test_entry_point_and_create_system(model_path):
    assert "transip" in MLPotential._implFactories
    top, pos = build()
    eth_top = app.Topology()
    res = eth_top.addResidue("ETH", eth_top.addChain())
    for s, _ in ETHANOL:
        eth_top.addAtom(s, app.Element.getBySymbol(s), res)
    potential = MLPotential("transip", modelPath=model_path, backend="python")
    system = potential.createSystem(eth_top, charge=1, multiplicity=2)
    assert any(isinstance(f, openmm.CMMotionRemover) for f in system.getForces())
    e = energy(system, pos[: len(ETHANOL)])
    assert abs(e - ml_reference(model_path, pos, 1, 2)) < 1e-8
    with pytest.raises(ValueError, match="impossible charge/spin"):
        potential.createSystem(eth_top, charge=0, multiplicity=2)
    with pytest.raises(TypeError, match="unknown argument"):
        potential.createSystem(eth_top, charg=1)
    with pytest.raises(ValueError, match="skin_angstrom"):  # openmm-ml's skinAngstrom reaches TransIPForce
        potential.createSystem(eth_top, charge=1, multiplicity=2, skinAngstrom=-1.0)


def test_create_mixed_system_energy_split(model_path):
    """E(ML/MM) = E_TransIP(ethanol) + E_MM(all) - E_MM(ethanol-internal bonds and nonbonded pairs)."""
    top, pos = build()
    potential = MLPotential("transip", modelPath=model_path, backend="python")
    ml_atoms = list(range(len(ETHANOL)))
    mixed = potential.createMixedSystem(top, mm_system(top), ml_atoms, forceGroup=3)
    e_mixed = energy(mixed, pos)
    e_ml = energy(mixed, pos, groups={3})
    e_ml_ref = ml_reference(model_path, pos)
    e_mm_rest = energy(mm_system(top, drop_ml_internal=True), pos)
    assert abs(e_ml - e_ml_ref) < 1e-8
    assert abs(e_mixed - (e_ml_ref + e_mm_rest)) < 1e-6
    # and the split is not vacuous: the ML region's own MM energy was really removed
    assert abs(energy(mm_system(top), pos) - e_mm_rest) > 1.0
