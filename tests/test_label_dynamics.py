"""The gfn2-dynamics labelling plan (transip_md/train/label_dynamics.py): a GFN2-xTB minimum in every state and
GFN2-xTB Langevin frames, checked on small molecules with real GFN2-xTB labels."""

import numpy as np
import pytest

from transip_md.train.label import SAMPLERS, LabelConfig, Labeller, sample_molecule
from transip_md.train.label_dynamics import reference_surface
from transip_md.train.molecules import Molecule

pytest.importorskip("tblite")


def _config(**kw) -> LabelConfig:
    base = dict(plan="gfn2-dynamics", gfn2_md_steps=20, gfn2_md_every=10, seed=4)
    base.update(kw)
    return LabelConfig(**base)


def test_minimum_is_a_gfn2_minimum_in_every_state_then_md_frames():
    cfg = _config()
    out = sample_molecule(0, Molecule("w", "CC(=O)N", "t", frozenset({"C", "N", "O"}), 4), cfg, Labeller(cfg))
    names = [SAMPLERS[s] for s in out.sampler]
    minimum = [k for k, n in enumerate(names) if n == "gfn2_min"]
    md = [k for k, n in enumerate(names) if n == "gfn2_md"]
    # the minimum in all four states (acetamide: 22 electrons, every state possible), one geometry id
    assert sorted((out.charge[k], out.spin[k]) for k in minimum) == sorted(cfg.states)
    assert len({out.geometry[k] for k in minimum}) == 1
    ground = next(k for k in minimum if (out.charge[k], out.spin[k]) == (0, 1))
    assert np.linalg.norm(out.forces[ground], axis=1).max() <= cfg.gfn2_relax_fmax + 1e-6  # a reference minimum
    assert out.param[ground] <= cfg.gfn2_relax_fmax
    # two MD frames (20 steps, one every 10), each in the ground state and one other state
    assert len({out.geometry[k] for k in md}) == 2 and len(md) == 4
    assert all(cfg.gfn2_t_min <= out.param[k] <= cfg.gfn2_t_max for k in md)
    for gid in {out.geometry[k] for k in md}:
        states = [(out.charge[k], out.spin[k]) for k in md if out.geometry[k] == gid]
        assert states[0] == (0, 1) and states[1] in cfg.states[1:]
    # the dynamics moved the atoms away from the minimum, and not far (a thermal excursion, Å)
    first = out.positions[md[0]]
    shift = np.linalg.norm(first - out.positions[ground], axis=1)
    assert 0.005 < shift.mean() < 0.5
    assert out.stats["gfn2_relax_converged"] == 1 and out.stats["frames"] == len(names)


def test_same_seed_same_frames_other_seed_other_dynamics():
    mol = Molecule("w", "CCO", "t", frozenset({"C", "O"}), 3)
    a = sample_molecule(0, mol, _config(), Labeller(_config()))
    b = sample_molecule(0, mol, _config(), Labeller(_config()))
    c = sample_molecule(0, mol, _config(seed=5), Labeller(_config(seed=5)))
    assert np.array_equal(np.stack(a.positions), np.stack(b.positions))
    assert not np.allclose(a.positions[-1], c.positions[-1])


def test_reused_wavefunction_gives_the_labellers_numbers():
    """The relaxation's calculator restarts each SCF from the last one: its energies and forces must be the
    labeller's fresh single points."""
    cfg = LabelConfig()
    lab = Labeller(cfg)
    numbers = np.array([8, 1, 1])
    base = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    surface = reference_surface(lab, numbers, 1, 2)
    rng = np.random.default_rng(0)
    for _ in range(3):
        pos = base + rng.normal(0, 0.02, base.shape)
        e, f = surface(pos)
        e_ref, f_ref = lab(numbers, pos, 1, 2)
        assert abs(e - e_ref) < 1e-6 and np.abs(f - f_ref).max() < 1e-4


def test_cli_rejects_a_bad_plan_setting(tmp_path, capsys):
    from transip_md.cli import main

    with pytest.raises(SystemExit) as err:
        main(["label", str(tmp_path / "x.npz"), "--plan", "gfn2-dynamics", "--gfn2-t-min", "800", "--gfn2-t-max", "3"])
    assert "--gfn2-t-min" in str(err.value)
    with pytest.raises(SystemExit):
        main(["label", str(tmp_path / "x.npz"), "--plan", "gfn3"])
    assert "invalid choice" in capsys.readouterr().err


def test_cli_writes_gfn2_dynamics_frames(tmp_path):
    from transip_md.cli import main
    from transip_md.train.data import read_frames

    smi = tmp_path / "s.smi"
    smi.write_text("CCO ethanol\n")
    out = tmp_path / "d.npz"
    args = ["label", str(out), "--smiles", str(smi), "--elements", "H,C,O", "--per-element", "0", "--plan"]
    args += ["gfn2-dynamics", "--gfn2-md-steps", "10", "--gfn2-md-every", "5", "--heldout-fraction", "0"]
    args += ["--no-progress"]
    assert main(args) == 0
    frames, _ = read_frames(out)
    assert sorted(f.sampler for f in frames) == ["gfn2_md"] * 4 + ["gfn2_min"] * 4
