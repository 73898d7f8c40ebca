"""`transip-md label`: parity, molecule selection, bad inputs counted by cause, resumability, the CLI."""

import json
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from transip_md.train.data import heldout_split, read_frames
from transip_md.train.label import SAMPLERS, LabelConfig, Labeller, parity_ok, run_labelling, sample_molecule
from transip_md.train.molecules import Molecule, check_molecule, graft, select_molecules

FLAKY = """
import numpy as np
from ase.calculators.emt import EMT

class Flaky(EMT):
    '''EMT that fails like a non-converged SCF for cations.'''
    def __init__(self, charge=0, multiplicity=1):
        super().__init__()
        self.q = charge
    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        if self.q == 1:
            raise RuntimeError("SCF did not converge in 250 iterations")
        super().calculate(atoms, properties, system_changes)
"""


def test_parity():
    z = np.array([6, 1, 1, 1, 1])  # CH4: 10 electrons
    assert parity_ok(z, 0, 1) and parity_ok(z, 0, 3) and parity_ok(z, 1, 2) and parity_ok(z, -1, 2)
    assert not parity_ok(z, 0, 2) and not parity_ok(z, 1, 1) and not parity_ok(z, 0, 0)
    with pytest.raises(Exception, match="impossible"):
        Labeller(LabelConfig())(z, np.zeros((5, 3)), 0, 2)


def test_check_molecule_causes():
    allowed = set("H C N O F P S Cl Br".split())
    assert check_molecule("CCO", allowed, 4, 40)[0] is None
    assert check_molecule("C1CC", allowed, 4, 40)[0] == "unparsable_smiles"
    assert check_molecule("CC.O", allowed, 4, 40)[0] == "multi_fragment"
    assert check_molecule("C[N+](C)(C)C", allowed, 4, 40)[0] == "charged"
    assert check_molecule("C[Si](C)(C)C", allowed, 4, 40)[0] == "element_not_allowed"
    assert check_molecule("C", allowed, 6, 40)[0] == "too_small"
    assert check_molecule("CCCCCCCCCCCCCC", allowed, 4, 40)[0] == "too_large"  # 14 C + 30 H


def test_graft_adds_a_phosphorus_group():
    from rdkit import Chem

    new = graft(Chem.MolFromSmiles("c1ccccc1"), "[*]P(=O)(O)O", np.random.default_rng(0))
    assert Chem.MolToSmiles(new) == "O=P(O)(O)c1ccccc1"


def test_default_selection_meets_element_quotas_and_heldout_covers_every_element():
    sel = select_molecules(n_molecules=1000, per_element=120, seed=0)
    counts = sel.element_counts()
    assert len(sel.molecules) == 1000 and all(counts[e] >= 120 for e in "H C N O F P S Cl Br".split())
    assert sel.derived["P"] > 0  # rdkit's sets hold only ~40 P molecules: the rest are derived
    assert all(4 <= m.n_atoms <= 40 for m in sel.molecules)
    assert len({m.smiles for m in sel.molecules}) == 1000
    held = Counter(e for m, h in zip(sel.molecules, sel.heldout, strict=True) if h for e in m.elements)
    assert sum(sel.heldout) == 100 and all(held[e] >= 5 for e in "H C N O F P S Cl Br".split())
    assert sel.rejected["too_large"] > 0 and sel.rejected["charged"] > 0  # counted, not silently dropped
    again = select_molecules(n_molecules=1000, per_element=120, seed=0)
    assert [m.smiles for m in again.molecules] == [m.smiles for m in sel.molecules]


def test_a_selection_can_leave_out_every_molecule_of_a_labelled_set():
    """--exclude-molecules-of: new molecules for a line that already trains on a set. Every molecule of the shipped
    main set (held-out or not) leaves the pool before the choice, counted as 'excluded'; none comes back derived."""
    from transip_md.train.data import load_compact
    from transip_md.train.label import _selection

    main_set = Path(__file__).resolve().parents[1] / "transip_md/data/gfn2-organics-9el.npz"
    main_smiles = {str(s) for s in load_compact(main_set)["mol_smiles"]}
    plain = select_molecules(n_molecules=400, per_element=30, seed=0)
    assert any(m.smiles in main_smiles for m in plain.molecules)  # without the option the sets overlap
    sel = _selection(LabelConfig(n_molecules=400, per_element=30, exclude_molecules_of=str(main_set)), None)
    assert len(sel.molecules) == 400 and not any(m.smiles in main_smiles for m in sel.molecules)
    assert sel.rejected["excluded"] > 2000 and sel.derived["P"] > 0  # the main set holds every natural P molecule
    assert sum(sel.heldout) == 40


def test_exclude_molecules_of_is_checked_and_named(tmp_path):
    from transip_md.cli import main

    out = str(tmp_path / "x.npz")
    with pytest.raises(SystemExit, match="no such data file: .*missing.npz"):
        main(["label", out, "--exclude-molecules-of", str(tmp_path / "missing.npz")])
    with pytest.raises(SystemExit, match="not --bond-supplement"):
        main(["label", out, "--bond-supplement", "--n-molecules", "4", "--exclude-molecules-of", out])
    assert not (tmp_path / "x.npz").exists()


def test_bond_supplement_grafts_every_rare_bond_group_and_spares_excluded_scaffolds():
    from rdkit import Chem

    from transip_md.train.molecules import BOND_GRAFTS, default_sources, read_pool, select_bond_supplement

    sel = select_bond_supplement(2 * len(BOND_GRAFTS), seed=0)
    assert len(sel.molecules) == 2 * len(BOND_GRAFTS)
    assert all(sel.derived[g] == 2 for g in BOND_GRAFTS)  # groups taken in turn
    for m, group in zip(sel.molecules, BOND_GRAFTS * 2, strict=True):
        core = Chem.MolFromSmiles(group.replace("[*]", "C"))  # the group's own bonds are in the molecule
        assert Chem.MolFromSmiles(m.smiles).HasSubstructMatch(core), (m.smiles, group)
        assert m.source == f"derived:{group}:{m.mol_id.removeprefix('derived-bond-')}"
    assert sum(sel.heldout) == round(0.1 * len(sel.molecules))
    again = select_bond_supplement(2 * len(BOND_GRAFTS), seed=0)
    assert [m.smiles for m in again.molecules] == [m.smiles for m in sel.molecules]
    # excluded scaffolds (e.g. another set's held-out molecules) are never parents
    pool, _ = read_pool(default_sources(), set("H C N O F P S Cl Br".split()), 4, 40)
    parents = {m.mol_id.removeprefix("derived-bond-") for m in sel.molecules}
    banned = {p.smiles for p in pool if p.mol_id in parents}
    spared = select_bond_supplement(2 * len(BOND_GRAFTS), exclude_smiles=banned, seed=0)
    assert not parents & {m.mol_id.removeprefix("derived-bond-") for m in spared.molecules}


def test_a_supplement_of_other_groups_grafts_them_under_ids_of_its_own():
    from rdkit import Chem

    from transip_md.train.commands import _graft_groups
    from transip_md.train.molecules import SOFT_BOND_GRAFTS, select_bond_supplement

    assert _graft_groups("soft", True) == SOFT_BOND_GRAFTS
    assert _graft_groups(" [*]CBr, [*]CF ", True) == ("[*]CBr", "[*]CF")
    with pytest.raises(SystemExit, match="CBr'"):  # no attachment point: named
        _graft_groups("[*]CF,CBr", True)
    with pytest.raises(SystemExit, match="needs --bond-supplement"):
        _graft_groups("soft", False)
    sel = select_bond_supplement(2 * len(SOFT_BOND_GRAFTS), seed=1, groups=SOFT_BOND_GRAFTS)
    assert all(sel.derived[g] == 2 for g in SOFT_BOND_GRAFTS)
    for m, group in zip(sel.molecules, SOFT_BOND_GRAFTS * 2, strict=True):
        assert Chem.MolFromSmiles(m.smiles).HasSubstructMatch(Chem.MolFromSmiles(group.replace("[*]", "C")))
        assert m.mol_id.startswith("derived-bond-") and m.mol_id.count("-") >= 3  # not the first supplement's ids
    first = select_bond_supplement(2 * len(SOFT_BOND_GRAFTS), seed=1)
    assert not {m.mol_id for m in first.molecules} & {m.mol_id for m in sel.molecules}


def test_bad_inputs_are_counted_by_cause_and_the_run_resumes(tmp_path, monkeypatch):
    (tmp_path / "flaky_calc.py").write_text(textwrap.dedent(FLAKY))
    monkeypatch.syspath_prepend(str(tmp_path))
    smi = tmp_path / "s.smi"
    smi.write_text("CCO ethanol\nCC(=O)O acetic\nC[N+](C)(C)C charged\nC1CC broken\nC[Si](C)(C)C silane\n")
    cfg = LabelConfig(
        elements=("H", "C", "N", "O"),
        n_molecules=None,
        per_element=0,
        heldout_fraction=0.5,
        md_steps=20,
        calculator="flaky_calc:Flaky",
        max_force=1e9,
        max_force_compressed=1e9,
    )
    out = tmp_path / "d.npz"
    s1 = run_labelling(out, cfg, sources=[smi], progress=False)
    assert s1["selection_rejected"] == {"charged": 1, "unparsable_smiles": 1, "element_not_allowed": 1}
    assert s1["molecules"] == 2 and s1["scf_failure"] > 0  # every cation frame failed, the run went on
    frames, _ = read_frames(out)
    assert len(frames) == s1["frames"] > 0 and all(f.charge != 1 for f in frames)
    assert {(f.charge, f.spin) for f in frames} == {(0, 1), (-1, 2), (0, 3)}
    train, held = heldout_split(frames)
    assert train and held and not {frames[i].mol_id for i in train} & {frames[i].mol_id for i in held}
    assert json.loads((tmp_path / "d.npz.parts" / "summary.json").read_text())["frames"] == s1["frames"]
    s2 = run_labelling(out, cfg, sources=[smi], progress=False)
    assert s2["resumed"] == 2 and s2["frames"] == s1["frames"]
    with pytest.raises(ValueError, match="another configuration"):
        run_labelling(out, LabelConfig(**{**cfg.__dict__, "seed": 1}), sources=[smi], progress=False)


def test_element_xtb_cannot_do_and_unembeddable_are_counted():
    pytest.importorskip("tblite")
    cfg = LabelConfig()
    out = sample_molecule(0, Molecule("u", "C[U]", "t", frozenset({"C", "H", "U"}), 5), cfg, Labeller(cfg))
    assert out.stats == {"element_not_in_xtb": 1} and not out.energy
    out = sample_molecule(0, Molecule("b", "C1CC", "t", frozenset({"C"}), 3), cfg, Labeller(cfg))
    assert out.stats == {"unparsable_smiles": 1}


def test_cli_builds_a_compact_set_with_tblite(tmp_path):
    pytest.importorskip("tblite")
    from transip_md.cli import main

    smi = tmp_path / "s.smi"
    smi.write_text("CC=O acetaldehyde\nCN methylamine\n")
    out = tmp_path / "x.npz"
    args = ["label", str(out), "--smiles", str(smi), "--elements", "H,C,N,O", "--per-element", "0"]
    args += ["--target-bonds", "[#6]=[#8]", "--target-frames", "2"]  # stretch C=O: acetaldehyde has one, CN none
    assert main([*args, "--md-steps", "40", "--heldout-fraction", "0.5", "--no-progress"]) == 0
    frames, _ = read_frames(out)
    assert len({f.mol_id for f in frames}) == 2 and len(frames) >= 24
    other_plans = {"xtb_md", "gfn2_min", "gfn2_md", "hbond_push", "compress_hbond"}
    assert {f.sampler for f in frames} == set(SAMPLERS) - other_plans
    assert {f.mol_id for f in frames if f.sampler == "stretch_target"} == {f.mol_id for f in frames if 8 in f.numbers}
    assert all(np.abs(f.forces).max() <= 100.0 for f in frames)
    # frames of one geometry id come from one molecule and hold identical positions
    by_geo = {}
    for f in frames:
        by_geo.setdefault(f.geometry_id, []).append(f)
    for group in by_geo.values():
        assert len({f.mol_id for f in group}) == 1
        assert all(np.array_equal(f.positions, group[0].positions) for f in group)


def test_legacy_xtb_md_sampler_still_runs(tmp_path):
    from transip_md.cli import main

    smi = tmp_path / "s.smi"
    smi.write_text("CCO ethanol\n")
    out = tmp_path / "old.extxyz"
    args = ["label", str(out), "--sampler", "xtb-md", "--smiles", str(smi), "--elements", "H,C,O", "--states", "0:1"]
    assert main([*args, "--steps", "4", "--sample-every", "2", "--calculator", "ase.calculators.emt:EMT"]) == 0
    frames, _ = read_frames(out)
    assert len(frames) == 2


def test_manifest_of_the_main_selection_has_no_later_fields():
    """Parts folders made before the bond supplement existed must still resume: a default configuration's
    manifest lists exactly the fields the shipped set was built with; a supplement run records its own."""
    from transip_md.train.label import LabelConfig, _manifest

    built_with = {
        "elements", "min_atoms", "max_atoms", "n_molecules", "per_element", "heldout_fraction", "states", "t_min",
        "t_max", "md_steps", "n_conformers", "compress_pair", "compress_bond", "stretch_bond", "relax_steps",
        "relax_step", "relax_max_move", "max_force", "max_force_compressed", "seed", "calculator",
        "calculator_kwargs", "molecules",
    }  # fmt: skip
    assert set(_manifest(LabelConfig(), [])) == built_with
    supplement = _manifest(LabelConfig(bond_supplement=True, exclude_heldout_of="main.npz"), [])
    assert supplement["bond_supplement"] is True and supplement["exclude_heldout_of"] == "main.npz"
    soft = _manifest(LabelConfig(bond_supplement=True, graft_groups=("[*]CBr",)), [])
    assert soft["graft_groups"] == ["[*]CBr"] and "graft_groups" not in supplement
    targeted = _manifest(LabelConfig(target_bonds=("[#6]-[Br]",), target_frames=2), [])
    assert targeted["target_bonds"] == ["[#6]-[Br]"] and targeted["target_frames"] == 2
    assert "target_stretch" not in targeted and "target_bonds" not in soft  # defaults stay out


def test_target_bond_options_are_checked_and_named():
    from transip_md.train.commands import _range, _target_bonds
    from transip_md.train.molecules import SOFT_BONDS

    assert _target_bonds(None) is None and _target_bonds("soft") == SOFT_BONDS
    assert _target_bonds(" [#6]-[Br], [#7]-[Cl] ") == ("[#6]-[Br]", "[#7]-[Cl]")
    with pytest.raises(SystemExit, match=r"'\[#6\]'"):  # one atom, no bond: named
        _target_bonds("[#6]-[F],[#6]")
    with pytest.raises(SystemExit, match="'C-C-C'"):
        _target_bonds("C-C-C")
    assert _range("--target-stretch", "1.1,1.5", "x bond length") == (1.1, 1.5)
    with pytest.raises(SystemExit, match="0 < LO < HI"):
        _range("--target-stretch", "1.5,1.1", "x bond length")
    with pytest.raises(SystemExit, match="LO,HI"):
        _range("--target-stretch", "1.5", "x bond length")
