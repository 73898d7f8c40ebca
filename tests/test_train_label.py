"""`transip-md label`: charge/spin parity, any ASE calculator, tblite GFN2-xTB frames, resumability."""

import numpy as np
import pytest

from transip_md.train.data import read_frames
from transip_md.train.label import LabelConfig, parity_ok, read_smiles, run_labelling


def test_parity():
    z = np.array([6, 1, 1, 1, 1])  # CH4: 10 electrons
    assert parity_ok(z, 0, 1) and parity_ok(z, 0, 3) and parity_ok(z, 1, 2) and parity_ok(z, -1, 2)
    assert not parity_ok(z, 0, 2) and not parity_ok(z, 1, 1)


def test_default_smiles_filter():
    mols = read_smiles(__import__("transip_md.train.label", fromlist=["x"]).default_smiles_file(), LabelConfig())
    assert len(mols) > 1000  # the NCI set has well over a thousand usable H,C,N,O molecules of 8-30 atoms
    assert len({m for m, _ in mols}) == len(mols)


def test_label_with_any_ase_calculator_and_resume(tmp_path):
    smi = tmp_path / "s.smi"
    smi.write_text("CCO ethanol\nCC(=O)O acetic\nC[N+](C)(C)C charged\n")
    cfg = LabelConfig(
        states=((0, 1), (0, 2)), n_steps=6, sample_every=3, calculator="ase.calculators.emt:EMT", max_force=1e9
    )
    out = tmp_path / "d.extxyz.gz"
    s1 = run_labelling(smi, out, cfg, progress=False)
    assert s1["molecules"] == 2  # the charged SMILES is filtered out
    assert s1["parity_skipped"] == 2  # a doublet of an even-electron molecule is impossible
    frames, _ = read_frames(out)
    assert len(frames) == s1["frames"] == 4
    assert {f.mol_id for f in frames} == {"s-0", "s-1"} and all((f.charge, f.spin) == (0, 1) for f in frames)
    s2 = run_labelling(smi, out, cfg, progress=False)
    assert s2["resumed"] == 2 and s2.get("frames", 0) == 0 and s2["total_frames"] == 4


def test_label_tblite_gfn2_states(tmp_path):
    pytest.importorskip("tblite")
    smi = tmp_path / "s.smi"
    smi.write_text("CC=O acetaldehyde\n")
    cfg = LabelConfig(min_atoms=3, states=((0, 1), (1, 2), (-1, 2), (0, 3)), n_steps=4, sample_every=2)
    out = tmp_path / "x.extxyz"
    summary = run_labelling(smi, out, cfg, progress=False)
    frames, _ = read_frames(out)
    assert summary["scf_failures"] == 0 and len(frames) == 8
    assert sorted({(f.charge, f.spin) for f in frames}) == [(-1, 2), (0, 1), (0, 3), (1, 2)]
    by_state = {(f.charge, f.spin): f.energy for f in frames}
    assert by_state[(1, 2)] > by_state[(0, 1)] + 3.0  # ionisation costs several eV in GFN2-xTB
    assert all(np.abs(f.forces).max() < cfg.max_force for f in frames)
