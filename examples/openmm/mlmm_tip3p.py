"""ML/MM: paracetamol (TransIP) in a TIP3P water box (amber14/tip3p), mechanical embedding via openmm-ml.

    python examples/openmm/mlmm_tip3p.py [--model model.pt] [--padding 0.8] [--steps 200]

The solute's MM parameters are deliberately minimal: a residue template with Gasteiger partial charges
(RDKit; zero charges if RDKit is missing) and generic per-element Lennard-Jones parameters, and no bonded
terms. Inside the ML region they are all replaced by TransIP (createMixedSystem removes the ML-ML
nonbonded pairs and constraints); they matter only for the solute-water interaction (mechanical
embedding: fixed MM charges + LJ). Water is rigid TIP3P with PME; the solute is unconstrained, hence the
1 fs default step. Defaults run in about a minute on one core.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
from openmm import unit
from openmmml import MLPotential

sys.path.insert(0, str(Path(__file__).parent))
from _common import pick_model  # noqa: E402

from transip_md.openmm.simulation import load_structure  # noqa: E402

HERE = Path(__file__).parent
#: Generic LJ (sigma nm, epsilon kJ/mol) per element for the solute's MM side (GAFF-like magnitudes).
LJ = {"H": (0.25, 0.07), "C": (0.34, 0.36), "N": (0.325, 0.71), "O": (0.30, 0.88)}


def solute_topology(xyz: str):
    """Topology (one residue LIG, bonds from distances) and positions (nm) of the solute."""
    top, pos, _, _ = load_structure(xyz)
    atoms = list(top.atoms())
    for i in range(len(atoms)):
        for j in range(i):
            r = np.linalg.norm(pos[i] - pos[j])
            cut = 0.12 if "H" in (atoms[i].element.symbol, atoms[j].element.symbol) else 0.17
            if r < cut:
                top.addBond(atoms[i], atoms[j])
    for atom in atoms:
        atom.residue.name = "LIG"
    return top, pos


def partial_charges(top, pos) -> list[float]:
    try:
        from rdkit import Chem
        from rdkit.Chem import rdDetermineBonds, rdPartialCharges
    except ImportError:
        return [0.0] * top.getNumAtoms()
    block = f"{top.getNumAtoms()}\n\n" + "".join(
        f"{a.element.symbol} {p[0] * 10:.5f} {p[1] * 10:.5f} {p[2] * 10:.5f}\n"
        for a, p in zip(top.atoms(), pos, strict=True)
    )
    mol = Chem.MolFromXYZBlock(block)
    rdDetermineBonds.DetermineBonds(mol, charge=0)
    rdPartialCharges.ComputeGasteigerCharges(mol)
    q = np.array([a.GetDoubleProp("_GasteigerCharge") for a in mol.GetAtoms()])
    return list(q - q.mean())  # exactly neutral


def solute_ffxml(top, charges) -> str:
    types, atoms, nb = [], [], []
    for a, q in zip(top.atoms(), charges, strict=True):
        t = f"LIG-{a.name}"
        types.append(f'<Type name="{t}" class="{t}" element="{a.element.symbol}" mass="{a.element.mass._value}"/>')
        atoms.append(f'<Atom name="{a.name}" type="{t}" charge="{q:.6f}"/>')
        s, e = LJ[a.element.symbol]
        nb.append(f'<Atom type="{t}" sigma="{s}" epsilon="{e}"/>')
    bonds = [f'<Bond atomName1="{b[0].name}" atomName2="{b[1].name}"/>' for b in top.bonds()]
    return (
        "<ForceField><AtomTypes>"
        + "".join(types)
        + '</AtomTypes><Residues><Residue name="LIG">'
        + "".join(atoms)
        + "".join(bonds)
        + "</Residue></Residues>"
        + '<NonbondedForce coulomb14scale="0.833333" lj14scale="0.5"><UseAttributeFromResidue name="charge"/>'
        + "".join(nb)
        + "</NonbondedForce></ForceField>"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model")
    p.add_argument("--structure", default=str(HERE / "paracetamol.xyz"))
    p.add_argument("--padding", type=float, default=0.8, help="water padding around the solute, nm")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--timestep", type=float, default=1.0, help="fs")
    p.add_argument("--backend", default="auto")
    p.add_argument("--platform", default="CPU")
    p.add_argument("--outdir", default=".")
    args = p.parse_args()
    model = pick_model(args.model)
    top, pos = solute_topology(args.structure)
    ff = app.ForceField("amber14/tip3p.xml", io.StringIO(solute_ffxml(top, partial_charges(top, pos))))
    pos = pos - pos.mean(axis=0)
    modeller = app.Modeller(top, [openmm.Vec3(*p) for p in pos] * unit.nanometer)
    extent = np.linalg.norm(pos[:, None] - pos[None], axis=-1).max()
    side = max(extent + 2 * args.padding, 2.0)  # PME cutoff 0.9 nm needs a box wider than 1.8 nm
    modeller.addSolvent(ff, model="tip3p", boxSize=openmm.Vec3(side, side, side) * unit.nanometer)
    mm_system = ff.createSystem(
        modeller.topology,
        nonbondedMethod=app.PME,
        nonbondedCutoff=0.9 * unit.nanometer,
        constraints=app.HBonds,
        rigidWater=True,
    )
    ml_atoms = [a.index for a in modeller.topology.atoms() if a.residue.name == "LIG"]
    potential = MLPotential("transip", modelPath=model, backend=args.backend)
    system = potential.createMixedSystem(modeller.topology, mm_system, ml_atoms, forceGroup=1, charge=0, multiplicity=1)
    print(
        f"{modeller.topology.getNumAtoms()} atoms ({len(ml_atoms)} ML, {modeller.topology.getNumResidues() - 1} waters)"
    )
    integrator = openmm.LangevinMiddleIntegrator(
        300 * unit.kelvin, 1 / unit.picosecond, args.timestep * unit.femtoseconds
    )
    sim = app.Simulation(modeller.topology, system, integrator, openmm.Platform.getPlatformByName(args.platform))
    sim.context.setPositions(modeller.positions)
    sim.minimizeEnergy(maxIterations=100)
    sim.context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    out = Path(args.outdir)
    sim.reporters.append(app.DCDReporter(str(out / "mlmm_tip3p.dcd"), 50))
    sim.reporters.append(
        app.StateDataReporter(
            str(out / "mlmm_tip3p.csv"),
            50,
            step=True,
            potentialEnergy=True,
            temperature=True,
            speed=True,
            separator=",",
        )
    )
    sim.step(args.steps)
    e_ml = sim.context.getState(getEnergy=True, groups={1}).getPotentialEnergy()
    e_all = sim.context.getState(getEnergy=True).getPotentialEnergy()
    print(
        f"{args.steps} steps: E_total {e_all.value_in_unit(unit.kilojoule_per_mole):.2f} kJ/mol, of which TransIP "
        f"{e_ml.value_in_unit(unit.kilojoule_per_mole):.2f} kJ/mol"
    )


if __name__ == "__main__":
    main()
