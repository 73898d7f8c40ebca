"""Make the example's inputs: a periodic box of water and methanol (LAMMPS data file, types H C N O)
and the model to run it with (the shipped pretrained model, or a random local model until it exists).

    python examples/lammps/make_box.py [--grid 4] [--out examples/lammps/work]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from transip_md.lammps.mliap import export_mliap
from transip_md.lammps.tools import molecule_box, write_data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", type=int, default=4, help="molecules per box edge (4: 64 molecules)")
    p.add_argument("--spacing", type=float, default=3.3, help="Å between molecule centres (liquid density)")
    p.add_argument("--out", default=str(Path(__file__).parent / "work"))
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atoms = molecule_box(["H2O", "CH3OH"], grid=args.grid, spacing=args.spacing, seed=7)
    write_data(out / "liquid.data", atoms)
    from transip_md.data import default_model_path

    shipped = default_model_path()
    model = out / "model.pt"
    if shipped.is_file():
        shutil.copy(shipped, model)
        note = f"shipped model {shipped}"
    else:
        from transip_md.model import TransIPConfig, export, random_model

        export(random_model(TransIPConfig(cutoff=5.0), seed=0), model, {"note": "random weights: example only"})
        note = "RANDOM local model (the shipped pretrained model is not there yet)"
    export_mliap(model, out / "model-mliap.pt")
    print(f"{out / 'liquid.data'}: {len(atoms)} atoms, cell {atoms.cell.lengths()[0]:.2f} Å; model: {note}")


if __name__ == "__main__":
    main()
