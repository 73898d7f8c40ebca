"""Molecule selection for labelling: read SMILES sets, filter, derive molecules for rare elements, choose.

Selection rule (see docs/data.md):

1. Read every SMILES of the sources (default: rdkit's ``Data/NCI/first_5K.smi`` and
   ``Data/Pains/test_data/wehi_mols.csv``). Keep a molecule when rdkit parses it, it is one fragment, its
   total formal charge is 0 with no radical electrons, all its elements (with H) are in the allowed set,
   and it has ``min_atoms``..``max_atoms`` atoms including H. Duplicates (same canonical SMILES) are
   dropped. Every rejected line is counted by cause.
2. Derive molecules for every element with fewer than ``per_element`` source molecules: F/Cl/Br replace
   one H on a carbon of a source scaffold (H C N O only); P grafts one of phosphonic acid, phosphate
   ester, dimethylphosphine, phosphine oxide, phosphinic acid onto an H-bearing carbon; S grafts a thiol
   or a methylthio group. Derived molecules pass the same filter.
3. Choose: shuffle (seeded) with a bias to small molecules (Efraimidis-Spirakis weighted order, weight
   n_atoms^-``size_bias``; 4 gives a median of about 23 atoms instead of 31 and 0.6x the GFN2 cost,
   still 15-34 atoms from the 10th to the 90th percentile); for the elements from rarest to commonest,
   take molecules holding that element until it is in ``per_element`` chosen molecules; fill up to
   ``n_molecules`` in that order.
   The chosen molecules are then shuffled once more (unweighted), so that every prefix of the list (a
   run cut short with ``--limit``) is a uniform sample of the selection.
4. Held-out: ``heldout_fraction`` of the chosen molecules, drawn per rarest element first so that every
   element has held-out molecules, then at random.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_ELEMENTS = ("H", "C", "N", "O", "F", "P", "S", "Cl", "Br")
#: Groups grafted onto a scaffold carbon for a missing element: SMILES fragments with a dummy atom [*].
GRAFTS = {
    "P": ("[*]P(=O)(O)O", "[*]OP(=O)(O)O", "[*]P(C)C", "[*]P(=O)(C)C", "[*]P(=O)(O)C", "[*]OP(=O)(OC)OC"),
    "S": ("[*]S", "[*]SC"),
    "F": ("[*]F",),
    "Cl": ("[*]Cl",),
    "Br": ("[*]Br",),
}

#: Groups holding the heteroatom-halogen (and P/S) bonds that the molecules of rdkit's sets almost never have
#: (P-Cl, S-Cl, N-Cl, P-F, S-F, P-Br, S-Br, N-Br, P=S, S-S, P-H: each in fewer than 10 of the 3,198 molecules of
#: the shipped set), for the bond supplement (:func:`select_bond_supplement`). A model never shown a bond
#: type cannot hold it together in MD (measured: P-Cl and S-Cl dissociated within 0.5 ps at 300 K).
BOND_GRAFTS = (
    "[*]S(=O)(=O)Cl",
    "[*]SCl",
    "[*]S(=O)(=O)F",
    "[*]P(=O)(Cl)Cl",
    "[*]P(Cl)Cl",
    "[*]OP(=O)(Cl)Cl",
    "[*]P(=O)(F)F",
    "[*]P(Br)Br",
    "[*]SBr",
    "[*]N(C)Cl",
    "[*]N(C)Br",
    "[*]P(=S)(C)C",
    "[*]SSC",
    "[*]P",
)

#: Groups of a second bond supplement (docs/data.md), for the bonds the shipped model measured softest against
#: GFN2-xTB on held-out molecules (bench/results/bond_dissociation*.md): the sp3 C-Br of benzylic and geminal
#: bromides (one broke in 300 K MD), C-F, S-F and N-Br; given to the trainer as ``--graft-groups``.
SOFT_BOND_GRAFTS = (
    "[*]CBr",
    "[*]C(Br)Br",
    "[*]CF",
    "[*]C(F)(F)F",
    "[*]S(=O)(=O)F",
    "[*]C(=O)NBr",
)
#: The bonds SOFT_BOND_GRAFTS bring in, as two-atom SMARTS: the targets of ``transip-md label --target-bonds soft``.
SOFT_BONDS = ("[#6]-[Br]", "[#6]-[F]", "[#16]-[F]", "[#7]-[Br]")


@dataclass
class Molecule:
    mol_id: str
    smiles: str
    source: str  # file stem, or "derived:<element>:<parent id>"
    elements: frozenset[str]
    n_atoms: int


@dataclass
class Selection:
    molecules: list[Molecule]
    heldout: list[bool]
    rejected: Counter = field(default_factory=Counter)  # cause -> count of input lines
    derived: Counter = field(default_factory=Counter)  # element -> derived molecules made

    def element_counts(self) -> dict[str, int]:
        c: Counter[str] = Counter()
        for m in self.molecules:
            c.update(m.elements)
        return dict(c)


def default_sources() -> list[Path]:
    """rdkit's NCI first_5K.smi and the PAINS test set wehi_mols.csv."""
    from rdkit import RDConfig

    data = Path(RDConfig.RDDataDir)
    return [data / "NCI" / "first_5K.smi", data / "Pains" / "test_data" / "wehi_mols.csv"]


def read_smiles_file(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(id, SMILES) pairs of a .smi (``SMILES [name]``) or .csv (first column SMILES) file; id = stem-line."""
    path = Path(path)
    stem = path.name.split(".")[0]
    out = []
    with open(path, newline="") as fh:
        rows = csv.reader(fh) if path.suffix.lower() == ".csv" else (line.split() for line in fh)
        for lineno, row in enumerate(rows):
            if row and row[0].strip() and not row[0].startswith("#"):
                out.append((f"{stem}-{lineno}", row[0].strip()))
    return out


def check_molecule(smiles: str, allowed: set[str], min_atoms: int, max_atoms: int) -> tuple[str | None, object]:
    """(reject cause or None, rdkit Mol without H). Causes: unparsable_smiles, multi_fragment, charged,
    radical, element_not_allowed, too_small, too_large."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return "unparsable_smiles", None
    if len(Chem.GetMolFrags(mol)) != 1:
        return "multi_fragment", mol
    if Chem.GetFormalCharge(mol) != 0:
        return "charged", mol
    if any(a.GetNumRadicalElectrons() for a in mol.GetAtoms()):
        return "radical", mol
    if not {a.GetSymbol() for a in mol.GetAtoms()} | {"H"} <= allowed | {"H"}:
        return "element_not_allowed", mol
    n = mol.GetNumAtoms() + sum(a.GetTotalNumHs() for a in mol.GetAtoms())
    if n < min_atoms:
        return "too_small", mol
    if n > max_atoms:
        return "too_large", mol
    return None, mol


def _as_molecule(mol_id: str, mol, source: str) -> Molecule:
    from rdkit import Chem

    molh = Chem.AddHs(mol)
    return Molecule(
        mol_id, Chem.MolToSmiles(mol), source, frozenset(a.GetSymbol() for a in molh.GetAtoms()), molh.GetNumAtoms()
    )


def graft(mol, fragment: str, rng: np.random.Generator):
    """``mol`` with one H of a random H-bearing carbon replaced by ``fragment`` (SMILES with [*]), or None."""
    from rdkit import Chem

    sites = [a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() == "C" and a.GetTotalNumHs() > 0]
    if not sites:
        return None
    site = sites[int(rng.integers(len(sites)))]
    n_h = mol.GetAtomWithIdx(site).GetTotalNumHs()
    frag = Chem.MolFromSmiles(fragment)
    combo = Chem.RWMol(Chem.CombineMols(mol, frag))
    offset = mol.GetNumAtoms()
    dummy = next(a.GetIdx() + offset for a in frag.GetAtoms() if a.GetAtomicNum() == 0)
    anchor = combo.GetAtomWithIdx(dummy).GetNeighbors()[0].GetIdx()
    combo.AddBond(site, anchor, Chem.BondType.SINGLE)
    atom = combo.GetAtomWithIdx(site)
    atom.SetNumExplicitHs(n_h - 1)
    atom.SetNoImplicit(True)
    combo.RemoveAtom(dummy)
    try:
        out = combo.GetMol()
        Chem.SanitizeMol(out)
        return Chem.MolFromSmiles(Chem.MolToSmiles(out))
    except Exception:  # noqa: BLE001 - an impossible valence: this graft is not made
        return None


def derive(
    pool: Sequence[Molecule],
    element: str,
    n_wanted: int,
    rng: np.random.Generator,
    allowed: set[str],
    min_atoms: int,
    max_atoms: int,
    exclude_smiles: set[str] | frozenset[str] = frozenset(),
) -> list[Molecule]:
    """Up to ``n_wanted`` new molecules holding ``element``, grafted onto H C N O scaffolds of ``pool``; a graft that
    is already in ``pool`` or in ``exclude_smiles`` is not new."""
    scaffolds = [m for m in pool if m.elements <= {"H", "C", "N", "O"}]
    order = rng.permutation(len(scaffolds))
    seen = {m.smiles for m in pool} | set(exclude_smiles)
    out: list[Molecule] = []
    for k in order:
        if len(out) >= n_wanted:
            break
        parent = scaffolds[int(k)]
        fragment = GRAFTS[element][int(rng.integers(len(GRAFTS[element])))]
        new = _new_graft(parent, fragment, rng, allowed, min_atoms, max_atoms, seen)
        if new is not None:
            out.append(_as_molecule(f"derived-{element}-{parent.mol_id}", new, f"derived:{element}:{parent.mol_id}"))
    return out


def _new_graft(parent: Molecule, fragment: str, rng: np.random.Generator, allowed, min_atoms, max_atoms, seen: set):
    """rdkit Mol of ``fragment`` grafted onto ``parent`` if it passes the filter and is new (added to ``seen``)."""
    from rdkit import Chem

    new = graft(Chem.MolFromSmiles(parent.smiles), fragment, rng)
    if new is None:
        return None
    smi = Chem.MolToSmiles(new)
    cause, _ = check_molecule(smi, allowed, min_atoms, max_atoms)
    if cause is not None or smi in seen:
        return None
    seen.add(smi)
    return new


def size_biased_order(molecules: Sequence[Molecule], rng: np.random.Generator, size_bias: float) -> np.ndarray:
    """Indices of ``molecules`` in a seeded random order that favours small ones (Efraimidis-Spirakis weighted
    order: key log(u) / weight, weight = n_atoms^-``size_bias``; one ``rng.random`` draw)."""
    sizes = np.array([m.n_atoms for m in molecules], dtype=np.float64)
    keys = np.log(rng.random(len(molecules))) * sizes**size_bias
    return np.argsort(-keys, kind="stable")


def read_pool(
    sources: Sequence[str | os.PathLike], allowed: set[str], min_atoms: int, max_atoms: int
) -> tuple[list[Molecule], Counter]:
    """Every molecule of ``sources`` that passes :func:`check_molecule`, de-duplicated; rejects by cause."""
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    rejected: Counter[str] = Counter()
    seen: set[str] = set()
    pool: list[Molecule] = []
    for src in sources:
        stem = Path(src).name.split(".")[0]
        for mol_id, smiles in read_smiles_file(src):
            cause, mol = check_molecule(smiles, allowed, min_atoms, max_atoms)
            if cause is not None:
                rejected[cause] += 1
                continue
            m = _as_molecule(mol_id, mol, stem)
            if m.smiles in seen:
                rejected["duplicate"] += 1
                continue
            seen.add(m.smiles)
            pool.append(m)
    return pool, rejected


def select_molecules(
    sources: Sequence[str | os.PathLike] | None = None,
    n_molecules: int | None = 3200,
    per_element: int = 330,
    heldout_fraction: float = 0.1,
    elements: Sequence[str] = DEFAULT_ELEMENTS,
    min_atoms: int = 4,
    max_atoms: int = 40,
    seed: int = 0,
    size_bias: float = 4.0,
    exclude_smiles: set[str] | frozenset[str] = frozenset(),
) -> Selection:
    """Apply the selection rule of this module's docstring; deterministic for a given ``seed``. Molecules whose
    canonical SMILES is in ``exclude_smiles`` (e.g. every molecule of an already labelled set) leave the pool before
    anything is chosen or derived (counted as ``excluded`` among the rejects), and no derived molecule may be one."""
    allowed = set(elements) | {"H"}
    pool, rejected = read_pool(sources or default_sources(), allowed, min_atoms, max_atoms)
    if exclude_smiles:
        kept = [m for m in pool if m.smiles not in exclude_smiles]
        rejected["excluded"] += len(pool) - len(kept)
        pool = kept
    rng = np.random.default_rng([seed, 7])
    derived: Counter[str] = Counter()
    for el in elements:
        have = sum(el in m.elements for m in pool)
        if have < per_element and el in GRAFTS:
            new = derive(pool, el, per_element - have, rng, allowed, min_atoms, max_atoms, exclude_smiles)
            derived[el] = len(new)
            pool.extend(new)
    order = [pool[int(i)] for i in size_biased_order(pool, rng, size_bias)]
    n_total = len(order) if n_molecules is None else min(n_molecules, len(order))
    chosen: dict[str, Molecule] = {}
    rarity = sorted(elements, key=lambda e: sum(e in m.elements for m in pool))
    for el in rarity:
        count = sum(el in m.elements for m in chosen.values())
        for m in order:
            if count >= per_element or len(chosen) >= n_total:
                break
            if el in m.elements and m.mol_id not in chosen:
                chosen[m.mol_id] = m
                count += 1
    for m in order:
        if len(chosen) >= n_total:
            break
        chosen.setdefault(m.mol_id, m)
    picked = [m for m in order if m.mol_id in chosen]
    # Final order: an unweighted seeded shuffle, so any prefix (a cut run) keeps the element balance.
    molecules = [picked[int(i)] for i in rng.permutation(len(picked))]
    heldout = choose_heldout(molecules, heldout_fraction, rarity, rng)
    return Selection(molecules, heldout, rejected, derived)


def choose_heldout(
    molecules: Sequence[Molecule], fraction: float, rarity: Sequence[str], rng: np.random.Generator
) -> list[bool]:
    """Held-out flags: ``fraction`` of each element's molecules (rarest first), then random to ``fraction``."""
    n_target = int(round(fraction * len(molecules)))
    flags = [False] * len(molecules)
    n = 0
    for el in rarity:
        idx = [i for i, m in enumerate(molecules) if el in m.elements]
        have = sum(flags[i] for i in idx)
        want = int(np.ceil(fraction * len(idx)))
        for i in rng.permutation(idx) if idx else []:
            if have >= want or n >= n_target:
                break
            if not flags[int(i)]:
                flags[int(i)] = True
                have += 1
                n += 1
    for i in rng.permutation(len(molecules)):
        if n >= n_target:
            break
        if not flags[int(i)]:
            flags[int(i)] = True
            n += 1
    return flags


def select_bond_supplement(
    n_molecules: int,
    sources: Sequence[str | os.PathLike] | None = None,
    exclude_smiles: set[str] | frozenset[str] = frozenset(),
    heldout_fraction: float = 0.1,
    elements: Sequence[str] = DEFAULT_ELEMENTS,
    min_atoms: int = 4,
    max_atoms: int = 40,
    seed: int = 0,
    size_bias: float = 4.0,
    groups: Sequence[str] | None = None,
) -> Selection:
    """``n_molecules`` derived molecules, each one of ``groups`` (None: :data:`BOND_GRAFTS`; taken in turn, so every
    group is equally represented) grafted onto an H C N O scaffold of the pool. Scaffolds are drawn in the
    same small-molecule-biased order as :func:`select_molecules`; scaffolds whose SMILES are in
    ``exclude_smiles`` (e.g. the held-out molecules of another set) are never used. Held-out: a seeded
    ``heldout_fraction`` of the result, by molecule (no per-element quota). Deterministic for a given ``seed``."""
    allowed = set(elements) | {"H"}
    pool, rejected = read_pool(sources or default_sources(), allowed, min_atoms, max_atoms)
    rng = np.random.default_rng([seed, 11])
    scaffolds = [m for m in pool if m.elements <= {"H", "C", "N", "O"} and m.smiles not in exclude_smiles]
    seen = {m.smiles for m in pool}
    out: list[Molecule] = []
    derived: Counter[str] = Counter()
    groups = BOND_GRAFTS if groups is None else tuple(groups)
    prefix = "derived-bond"  # other groups than BOND_GRAFTS: ids of their own, unique across supplements
    if groups != BOND_GRAFTS:
        prefix += "-" + hashlib.sha256(",".join(groups).encode()).hexdigest()[:6]
    for k in size_biased_order(scaffolds, rng, size_bias):
        if len(out) >= n_molecules:
            break
        parent = scaffolds[int(k)]
        fragment = groups[len(out) % len(groups)]
        new = _new_graft(parent, fragment, rng, allowed, min_atoms, max_atoms, seen)
        if new is not None:
            out.append(_as_molecule(f"{prefix}-{parent.mol_id}", new, f"derived:{fragment}:{parent.mol_id}"))
            derived[fragment] += 1
    return Selection(out, choose_heldout(out, heldout_fraction, (), rng), rejected, derived)


#: Intramolecular hydrogen bonds (the ``--motif hbond`` selection and the ``gfn2-hbond`` plan): a donor N or O that
#: carries an H and an acceptor N or O this many bonds away, so that D-H...A closes a 5- or 6-membered ring (the
#: N-H...O=C ring of an acylurea, the O-H...O=C ring of a salicylaldehyde or an enol).
HBOND_RING_BONDS = (3, 4)


def hbond_pairs(mol) -> list[tuple[int, int]]:
    """(donor, acceptor) atom-index pairs of ``mol`` (rdkit, with or without explicit H) that can close an
    intramolecular hydrogen-bond ring (:data:`HBOND_RING_BONDS`); acceptors with a positive formal charge (the N of
    a nitro group) are left out."""
    from rdkit import Chem

    dist = Chem.GetDistanceMatrix(mol)
    donors = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() in (7, 8) and a.GetTotalNumHs(True) > 0]
    acceptors = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() in (7, 8) and a.GetFormalCharge() <= 0]
    return [(d, a) for d in donors for a in acceptors if int(dist[d, a]) in HBOND_RING_BONDS]


def select_motif_molecules(
    n_molecules: int,
    sources: Sequence[str | os.PathLike] | None = None,
    exclude_smiles: set[str] | frozenset[str] = frozenset(),
    heldout_fraction: float = 0.1,
    elements: Sequence[str] = DEFAULT_ELEMENTS,
    min_atoms: int = 4,
    max_atoms: int = 40,
    seed: int = 0,
    size_bias: float = 4.0,
    training_smiles: set[str] | frozenset[str] = frozenset(),
) -> Selection:
    """``n_molecules`` molecules of the pool (nothing derived) that hold an intramolecular hydrogen-bond motif
    (:func:`hbond_pairs`), in the same small-molecule-biased seeded order as :func:`select_molecules`. Molecules whose
    SMILES are in ``exclude_smiles`` (e.g. the held-out molecules of the sets a line trains on) are never chosen
    (``excluded`` among the rejects; molecules without the motif count as ``no_motif``). Held-out: molecules in
    ``training_smiles`` (the training side of those sets) keep that side, so a molecule shared by two files has one
    flag; of the others a seeded ``heldout_fraction``, by molecule. Deterministic for a given ``seed``."""
    from rdkit import Chem

    allowed = set(elements) | {"H"}
    pool, rejected = read_pool(sources or default_sources(), allowed, min_atoms, max_atoms)
    kept = []
    for m in pool:
        if m.smiles in exclude_smiles:
            rejected["excluded"] += 1
        elif not hbond_pairs(Chem.MolFromSmiles(m.smiles)):
            rejected["no_motif"] += 1
        else:
            kept.append(m)
    rng = np.random.default_rng([seed, 13])
    out = [kept[int(i)] for i in size_biased_order(kept, rng, size_bias)][:n_molecules]
    new = [k for k, m in enumerate(out) if m.smiles not in training_smiles]
    flags = [False] * len(out)
    for k, held in zip(new, choose_heldout([out[k] for k in new], heldout_fraction, (), rng), strict=True):
        flags[k] = held
    return Selection(out, flags, rejected, Counter())
