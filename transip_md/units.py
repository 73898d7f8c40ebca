"""CODATA-2018 constants and unit conversions: the only place they live in transip-md.

Model units are eV and Å. OpenMM uses kJ/mol and nm; LAMMPS ``metal`` eV and Å, ``real`` kcal/mol and Å.
"""

from __future__ import annotations

#: Avogadro constant, 1/mol (exact, SI 2019).
AVOGADRO = 6.02214076e23
#: Elementary charge, C (exact); 1 eV = this many J.
ELECTRON_VOLT_J = 1.602176634e-19
#: Thermochemical calorie, J (exact).
CALORIE_J = 4.184
#: Boltzmann constant in eV/K (exact).
BOLTZMANN_EV_PER_K = 8.617333262e-5
#: Coulomb constant e^2 / (4 pi eps0) in eV Å (CODATA 2018: 1.439964547e-9 eV m).
COULOMB_EV_ANGSTROM = 14.39964547

#: meV per eV: errors and spreads are reported in meV, meV/atom and meV/Å.
MEV_PER_EV = 1000.0

#: 1 eV in kJ/mol (96.48533212...).
EV_TO_KJ_PER_MOL = ELECTRON_VOLT_J * AVOGADRO / 1000.0
#: 1 eV in kcal/mol (23.0605478...).
EV_TO_KCAL_PER_MOL = EV_TO_KJ_PER_MOL / CALORIE_J
KJ_PER_MOL_TO_EV = 1.0 / EV_TO_KJ_PER_MOL
KCAL_PER_MOL_TO_EV = 1.0 / EV_TO_KCAL_PER_MOL

#: 1 Å in nm.
ANGSTROM_TO_NM = 0.1
NM_TO_ANGSTROM = 10.0

#: Force conversions: eV/Å -> kJ/mol/nm and kcal/mol/Å.
EV_PER_A_TO_KJ_PER_MOL_NM = EV_TO_KJ_PER_MOL / ANGSTROM_TO_NM
EV_PER_A_TO_KCAL_PER_MOL_A = EV_TO_KCAL_PER_MOL

#: 1 eV/Å^3 in bar (LAMMPS metal pressure) and in atm (LAMMPS real pressure).
EV_PER_A3_TO_BAR = ELECTRON_VOLT_J / 1e-30 / 1e5
EV_PER_A3_TO_ATM = ELECTRON_VOLT_J / 1e-30 / 101325.0

#: Energy factor from model units (eV) to each LAMMPS unit style we support.
LAMMPS_ENERGY_FROM_EV = {"metal": 1.0, "real": EV_TO_KCAL_PER_MOL}
#: Pressure factor from eV/Å^3 to each LAMMPS unit style we support.
LAMMPS_PRESSURE_FROM_EV_PER_A3 = {"metal": EV_PER_A3_TO_BAR, "real": EV_PER_A3_TO_ATM}

#: Hartree energy in eV and Bohr radius in Å (CODATA 2018), for quantum-chemistry codes (tblite).
HARTREE_TO_EV = 27.211386245988
BOHR_TO_ANGSTROM = 0.529177210903
#: Atomic mass unit in kg (CODATA 2018).
AMU_KG = 1.66053906660e-27
#: Acceleration of a force in kcal/mol/Å on a mass in amu, in Å/fs^2 (classical force fields in rdkit).
KCAL_PER_MOL_A_PER_AMU_TO_A_PER_FS2 = CALORIE_J * 1000.0 / AVOGADRO / 1e-10 / AMU_KG * 1e-20
#: Boltzmann constant in kcal/mol/K.
BOLTZMANN_KCAL_PER_MOL_K = BOLTZMANN_EV_PER_K * EV_TO_KCAL_PER_MOL
