"""Write the example's LAMMPS data file: a periodic box of water and methanol (atom types 1-4 = H C N O).

    python examples/lammps/make_box.py [--grid 2] [--spacing 3.6] [--out examples/lammps/liquid.data]
    python examples/lammps/make_box.py --mliap examples/lammps/model-mliap.pt   # also the ML-IAP file

The shipped liquid.data was made with the defaults (2 x 2 x 2 molecules, 36 atoms, 7.2 Å box). `--mliap PATH`
also exports the shipped model for `pair_style mliap unified` (only needed for `-var style mliap`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from transip_md.testing.lammps import molecule_box, write_data

HERE = Path(__file__).resolve().parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", type=int, default=2, help="molecules per box edge (2: 8 molecules, 36 atoms)")
    p.add_argument("--spacing", type=float, default=3.6, help="Å between molecule centres (about liquid density)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default=str(HERE / "liquid.data"))
    p.add_argument("--mliap", default=None, help="also write the shipped model as an ML-IAP file here")
    args = p.parse_args()
    atoms = molecule_box(["H2O", "CH3OH"], grid=args.grid, spacing=args.spacing, seed=args.seed)
    out = write_data(args.out, atoms)
    print(f"{out}: {len(atoms)} atoms, cubic cell {atoms.cell.lengths()[0]:.2f} Å")
    if args.mliap:
        from transip_md.data import default_model_path
        from transip_md.lammps.mliap import export_mliap

        export_mliap(default_model_path(), args.mliap)
        print(f"{args.mliap}: ML-IAP file of {default_model_path()}")


if __name__ == "__main__":
    main()
