"""The split by molecule holds across the shipped data files: a molecule that appears in two files (same SMILES) is
held out in both or in neither, so no file can train on another file's held-out molecule."""

from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1] / "transip_md" / "data"
FILES = sorted(p.name for p in DATA.glob("*.npz"))


def _flags(name: str) -> dict[str, bool]:
    with np.load(DATA / name, allow_pickle=False) as a:
        return dict(zip(a["mol_smiles"].tolist(), a["mol_heldout"].astype(bool).tolist(), strict=True))


@pytest.mark.parametrize("first, second", list(combinations(FILES, 2)))
def test_a_molecule_shared_by_two_shipped_files_has_one_flag(first, second):
    a, b = _flags(first), _flags(second)
    disagree = sorted(s for s in a.keys() & b.keys() if a[s] != b[s])
    assert not disagree, f"{first} and {second} split {len(disagree)} molecules differently, e.g. {disagree[:3]}"


def test_the_dynamics_sets_are_drawn_from_the_main_set_with_its_flags():
    """The main dynamics sets re-label the main set's own molecules (docs/data.md): nearly all of their molecules are
    main-set molecules, and their held-out share is the main set's."""
    main = _flags("gfn2-organics-9el.npz")
    for name in ("gfn2-dynamics.npz", "gfn2-dynamics-1600.npz", "gfn2-dynamics-3200.npz"):
        flags = _flags(name)
        shared = flags.keys() & main.keys()
        assert len(shared) >= len(flags) - 1, name
        assert sum(flags.values()) == sum(main[s] for s in shared), name


def test_the_extra_dynamics_set_holds_only_molecules_no_other_file_has():
    """The extra dynamics set was selected with every main-set molecule excluded (docs/data.md): it shares no
    molecule with any other shipped file that was made before it, and holds held-out molecules of its own (the
    hydrogen-bond supplement, made after it, may share its training-side molecules: the next test)."""
    extra = _flags("gfn2-dynamics-extra.npz")
    for name in FILES:
        if name not in ("gfn2-dynamics-extra.npz", "gfn2-hbond-supplement.npz"):
            shared = extra.keys() & _flags(name).keys()
            assert not shared, f"{name} shares {len(shared)} molecules with the extra set, e.g. {sorted(shared)[:3]}"
    assert 0 < sum(extra.values()) < len(extra)


def test_the_hbond_supplement_never_holds_a_heldout_molecule_of_the_main_or_extra_set():
    """The hydrogen-bond supplement was selected with the held-out molecules of the main and extra sets excluded
    (docs/data.md): the molecules it shares with them are their training-side ones (and so on its own training side),
    and its own held-out molecules are new to every file."""
    hbond = _flags("gfn2-hbond-supplement.npz")
    shared_any = set()
    for name in ("gfn2-organics-9el.npz", "gfn2-dynamics-extra.npz"):
        other = _flags(name)
        shared = hbond.keys() & other.keys()
        assert shared and not any(other[s] or hbond[s] for s in shared), name
        shared_any |= shared
    held = {s for s, h in hbond.items() if h}
    assert held and not held & shared_any
    for name in FILES:
        if name != "gfn2-hbond-supplement.npz":
            assert not held & _flags(name).keys(), name
