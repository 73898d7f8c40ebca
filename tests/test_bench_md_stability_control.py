"""bench/md_stability.py's GFN2-xTB control: the reference MD holds its centre of mass with ASE's FixCom constraint
(not Langevin's deprecated fixcm=True) and keeps the molecule's temperature near the bath's."""

from __future__ import annotations

import warnings

import numpy as np
from ase.build import molecule


def test_gfn2_control_holds_the_centre_of_mass_without_the_deprecated_option(load_bench):
    bench = load_bench("md_stability")
    ethanol = molecule("CH3CH2OH")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # ASE warns on Langevin(fixcm=True)
        atoms, dynamics = bench.gfn2_langevin(ethanol.numbers, ethanol.positions, 300.0, 1.0, seed=0)
        start = atoms.get_center_of_mass().copy()
        temperatures = []
        for _ in range(10):
            dynamics.run(40)
            temperatures.append(atoms.get_temperature())
    assert np.linalg.norm(atoms.get_center_of_mass() - start) < 1e-8  # Å
    assert np.linalg.norm(atoms.get_momenta().sum(axis=0)) < 1e-8
    # 0.4 ps of a 9-atom molecule at 300 K: the mean temperature is the bath's within a wide thermal spread
    assert 100.0 < float(np.mean(temperatures)) < 500.0
