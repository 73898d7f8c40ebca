"""Write transip_units.h from transip_md/units.py (the only place unit constants live).

Usage: python gen_units.py UNITS_PY OUTPUT_H   (run by CMake at build time; no package import needed)
"""

import runpy
import sys

units = runpy.run_path(sys.argv[1])
metal = units["LAMMPS_ENERGY_FROM_EV"]["metal"]
real = units["LAMMPS_ENERGY_FROM_EV"]["real"]
text = f"""// Generated from transip_md/units.py by plugins/lammps/gen_units.py: do not edit.
#ifndef TRANSIP_UNITS_H
#define TRANSIP_UNITS_H
// model energies are eV, lengths Å; LAMMPS metal = eV, Å; real = kcal/mol, Å
#define TRANSIP_ENERGY_FROM_EV_METAL {metal!r}
#define TRANSIP_ENERGY_FROM_EV_REAL {real!r}
#endif
"""
with open(sys.argv[2], "w") as fh:
    fh.write(text)
