"""Test and benchmark scaffolding shipped with transip-md (not part of the engine bridges):
:mod:`transip_md.testing.lammps` builds molecular boxes and LAMMPS data files and drives a LAMMPS run."""
