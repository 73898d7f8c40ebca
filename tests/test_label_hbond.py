"""The hydrogen-bond supplement (docs/data.md): the --motif hbond selection, the distortions of
transip_md/train/sampling.py, and the gfn2-hbond plan with real GFN2-xTB labels."""

from pathlib import Path

import numpy as np
import pytest

from transip_md.train.label import SAMPLERS, LabelConfig, Labeller, _manifest, _selection, sample_molecule
from transip_md.train.molecules import Molecule, hbond_pairs
from transip_md.train.sampling import embed, hbond_triples, hbonded_conformer, push_hydrogen, squeeze_hbond

DATA = Path(__file__).resolve().parents[1] / "transip_md/data"
ACETYLUREA = "CC(=O)NC(N)=O"  # the held-out molecule whose NH2 hydrogen closed onto the acetyl O in stage 14's MD


def test_hbond_pairs_find_the_rings_and_only_them():
    from rdkit import Chem

    # acetylurea: the NH2 (atom 5) reaches the acetyl O (2) through 4 bonds, the NH (3) reaches nothing 3-4 away
    # but its own carbonyl Os are 2 bonds away (too close for a ring)
    assert hbond_pairs(Chem.MolFromSmiles(ACETYLUREA)) == [(5, 2)]
    assert hbond_pairs(Chem.MolFromSmiles("Oc1ccccc1C=O")) == [(0, 8)]  # salicylaldehyde: O-H...O=C, 6-ring
    assert hbond_pairs(Chem.MolFromSmiles("CCCCO")) == []  # no acceptor
    assert hbond_pairs(Chem.MolFromSmiles("CC(=O)OC")) == []  # no donor H
    assert hbond_pairs(Chem.MolFromSmiles("Nc1ccccc1[N+](=O)[O-]")) == [(0, 8), (0, 9)]  # nitro Os, never its N+


def test_motif_selection_spares_the_heldout_molecules_of_the_given_sets():
    from rdkit import Chem

    from transip_md.train.data import load_compact

    files = [str(DATA / "gfn2-organics-9el.npz"), str(DATA / "gfn2-dynamics-extra.npz")]
    held, trained = set(), set()
    for f in files:
        a = load_compact(f)
        held |= {str(s) for s, h in zip(a["mol_smiles"], a["mol_heldout"], strict=True) if h}
        trained |= {str(s) for s, h in zip(a["mol_smiles"], a["mol_heldout"], strict=True) if not h}
    assert ACETYLUREA in held
    sel = _selection(LabelConfig(motif="hbond", n_molecules=300, exclude_heldout_of=tuple(files)), None)
    assert len(sel.molecules) == 300
    assert not any(m.smiles in held for m in sel.molecules)
    # a molecule on those sets' training side stays on it; 10 % of the new ones are held out
    shared = [m.smiles in trained for m in sel.molecules]
    assert 0 < sum(shared) < 300 and not any(h for h, s in zip(sel.heldout, shared, strict=True) if s)
    assert sum(sel.heldout) == round(0.1 * (300 - sum(shared)))
    assert all(hbond_pairs(Chem.MolFromSmiles(m.smiles)) for m in sel.molecules)
    assert sel.rejected["excluded"] > 100 and sel.rejected["no_motif"] > 1000
    # without the exclusion some held-out molecule of those sets would have been chosen
    plain = _selection(LabelConfig(motif="hbond", n_molecules=300), None)
    assert any(m.smiles in held for m in plain.molecules)
    # a run with one excluded file records a string (as before), with two a list; defaults stay out
    assert _manifest(LabelConfig(motif="hbond", exclude_heldout_of=tuple(files)), [])["exclude_heldout_of"] == files
    assert "hbond_push" not in _manifest(LabelConfig(motif="hbond"), [])


def test_hbonded_conformer_then_push_and_squeeze():
    mol, _ = embed(ACETYLUREA, 4, seed=1)
    triples = hbond_triples(mol)
    assert {(d, a) for _, d, a in triples} == {(5, 2)} and len(triples) == 2  # both H of the NH2
    h, d, a = triples[0]
    # ETKDG/MMFF conformers of acetylurea are all open (H...O > 4 Å); the restrained one closes the ring
    assert min(np.linalg.norm(c.GetPositions()[h] - c.GetPositions()[a]) for c in mol.GetConformers()) > 3.0
    pos, energy = hbonded_conformer(mol, h, a)
    assert np.isfinite(energy)
    assert 1.6 < np.linalg.norm(pos[h] - pos[a]) < 2.2
    bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
    lengths = np.array([np.linalg.norm(pos[i] - pos[j]) for i, j in bonds])
    assert 0.9 < lengths.min() and lengths.max() < 1.6  # a molecule, not a distorted one
    push = push_hydrogen(pos, h, a, 1.2)
    assert np.isclose(np.linalg.norm(push.positions[h] - push.positions[a]), 1.2)
    moved = np.linalg.norm(push.positions - pos, axis=1) > 1e-12
    assert moved.tolist() == [k == h for k in range(len(pos))]
    # H moved on the H...A line: the donor-H bond stretches
    assert np.linalg.norm(push.positions[h] - pos[d]) > np.linalg.norm(pos[h] - pos[d]) + 0.3
    sq = squeeze_hbond(mol, pos, d, a, 2.3)
    assert np.isclose(np.linalg.norm(sq.positions[d] - sq.positions[a]), 2.3)
    moved = set(np.flatnonzero(np.linalg.norm(sq.positions - pos, axis=1) > 1e-12).tolist())
    assert moved == {d, a, *[t[0] for t in triples]}  # the donor with its H atoms, and the acceptor
    # the donor's N-H bonds keep their lengths (the group moves rigidly)
    for t in triples:
        assert np.isclose(np.linalg.norm(sq.positions[t[0]] - sq.positions[d]), np.linalg.norm(pos[t[0]] - pos[d]))


@pytest.mark.slow
def test_gfn2_hbond_plan_labels_a_proton_transfer_wall():
    pytest.importorskip("tblite")
    cfg = LabelConfig(plan="gfn2-hbond", gfn2_md_steps=20, gfn2_md_every=10, target_frames=4, n_conformers=4, seed=2)
    mol = Molecule("t", ACETYLUREA, "t", frozenset({"C", "N", "O"}), 13)
    out = sample_molecule(0, mol, cfg, Labeller(cfg))
    names = [SAMPLERS[s] for s in out.sampler]
    assert names.count("gfn2_min") == 4 and names.count("gfn2_md") == 4
    assert names.count("hbond_push") == 5 and names.count("compress_hbond") == 2  # 4 push (+1 state), 2 squeeze
    pushes = [k for k, n in enumerate(names) if n == "hbond_push" and (out.charge[k], out.spin[k]) == (0, 1)]
    distances = [out.param[k] for k in pushes]
    assert [1.0 <= r <= 1.7 for r in distances] == [True] * 4 and distances == sorted(distances)  # one per stratum
    ground = [k for k, n in enumerate(names) if n == "gfn2_min" and (out.charge[k], out.spin[k]) == (0, 1)]
    e_min = out.energy[ground[0]]
    # the reference says a hydrogen pushed from its donor to 1.0-1.7 Å of the acceptor costs energy (eV), the more
    # the closer: the wall the stage-14 model lacked
    rise = [out.energy[k] - e_min for k in pushes]
    assert min(rise) > 0.1 and rise[0] > rise[-1]
    assert out.stats["frames"] == len(names)


def test_motif_options_are_checked_and_named(tmp_path):
    from transip_md.cli import main

    out = str(tmp_path / "x.npz")
    with pytest.raises(SystemExit, match="--motif is its own selection"):
        main(["label", out, "--motif", "hbond", "--bond-supplement"])
    with pytest.raises(SystemExit, match="--motif is its own selection"):
        main(["label", out, "--motif", "hbond", "--exclude-molecules-of", out])
    with pytest.raises(SystemExit, match=r"--hbond-push: need 0 < LO < HI \(Å\), got 1.7, 1.0"):
        main(["label", out, "--plan", "gfn2-hbond", "--motif", "hbond", "--hbond-push", "1.7,1.0"])
    with pytest.raises(SystemExit, match=r"--hbond-squeeze: 'x' is not LO,HI \(two numbers, Å\)"):
        main(["label", out, "--plan", "gfn2-hbond", "--motif", "hbond", "--hbond-squeeze", "x"])
    with pytest.raises(SystemExit, match="--n-conformers must be at least 1"):
        main(["label", out, "--n-conformers", "0"])
    with pytest.raises(SystemExit, match="no such data file: .*x.npz"):
        main(["label", out, "--motif", "hbond", "--exclude-heldout-of", str(DATA / "gfn2-organics-9el.npz"), out])
    assert not (tmp_path / "x.npz").exists()


def test_options_that_do_not_go_together_are_refused_where_the_config_is_made():
    """One check, in LabelConfig itself: the library and the CLI refuse the same combinations with the same words."""
    from transip_md.train.label import LabelConfigError

    with pytest.raises(LabelConfigError, match="--motif is its own selection"):
        LabelConfig(motif="hbond", bond_supplement=True)
    with pytest.raises(LabelConfigError, match="not --bond-supplement"):
        LabelConfig(bond_supplement=True, exclude_molecules_of="main.npz")
    with pytest.raises(LabelConfigError, match="--n-conformers must be at least 1, got 0"):
        LabelConfig(n_conformers=0)
    assert isinstance(LabelConfigError("x"), ValueError)
