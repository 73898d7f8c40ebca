"""Cheap geometry samplers for labelling (no quantum chemistry here; positions in Å).

* :func:`embed` - rdkit ETKDG conformers, relaxed with MMFF94 (UFF when MMFF lacks parameters).
* :class:`ClassicalSurface` - the MMFF94/UFF force field of one molecule (energy kcal/mol, forces kcal/mol/Å).
* :func:`thermal_md` - Langevin (BAOAB) MD on the classical surface at 300-1200 K, in numpy.
* :func:`compress_pair` - a random non-bonded pair pushed to 0.6-0.8 x the sum of covalent radii.
* :func:`scale_bond` - a bond compressed (~0.7-0.8 x) or stretched (1.2-1.8 x) by moving the smaller side.
* :func:`matching_bonds` - the bonds that match two-atom SMARTS (the targets of the stretch_target sampler).

Every sampler takes a ``numpy.random.Generator`` so that a seeded run is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..units import BOLTZMANN_KCAL_PER_MOL_K, KCAL_PER_MOL_A_PER_AMU_TO_A_PER_FS2

#: Single-bond covalent radii in Å (Cordero et al. 2008; C sp3).
COVALENT_RADIUS = {1: 0.31, 5: 0.84, 6: 0.76, 7: 0.71, 8: 0.66, 9: 0.57, 14: 1.11, 15: 1.07, 16: 1.05, 17: 1.02}
COVALENT_RADIUS.update({35: 1.20, 53: 1.39})


class SamplingError(RuntimeError):
    """A molecule the samplers cannot handle; ``cause`` is a short reason used in the reject counters."""

    def __init__(self, cause: str, message: str) -> None:
        super().__init__(message)
        self.cause = cause


def covalent_radii(numbers: np.ndarray) -> np.ndarray:
    """Covalent radius of each atom in Å (0.8 Å for elements missing from the table)."""
    return np.array([COVALENT_RADIUS.get(int(z), 0.8) for z in numbers])


def embed(smiles: str, n_conformers: int, seed: int):
    """(rdkit Mol with explicit H and ``n_conformers`` MMFF/UFF-relaxed conformers, force-field name).

    Raises :class:`SamplingError` with cause ``unparsable_smiles``, ``embedding_failed`` or ``no_force_field``.
    """
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise SamplingError("unparsable_smiles", f"rdkit cannot parse {smiles!r}")
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed) % (2**31)
    ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n_conformers, params=params))
    if not ids:
        params.useRandomCoords = True
        ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n_conformers, params=params))
    if not ids:
        raise SamplingError("embedding_failed", f"ETKDG cannot embed {smiles!r}")
    surface = ClassicalSurface(mol)
    for cid in ids:
        pos = surface.minimise(mol.GetConformer(cid).GetPositions())
        conf = mol.GetConformer(cid)
        for i, p in enumerate(pos):
            conf.SetAtomPosition(i, p.tolist())
    return mol, surface.name


class ClassicalSurface:
    """MMFF94 (or UFF) energy and forces of one rdkit molecule; raises SamplingError if neither has parameters."""

    def __init__(self, mol) -> None:
        from rdkit.Chem import AllChem

        self.mol = mol
        self.masses = np.array([a.GetMass() for a in mol.GetAtoms()])
        if AllChem.MMFFHasAllMoleculeParams(mol):
            props = AllChem.MMFFGetMoleculeProperties(mol)
            self.ff = AllChem.MMFFGetMoleculeForceField(mol, props, ignoreInterfragInteractions=False)
            self.name = "MMFF94"
        elif AllChem.UFFHasAllMoleculeParams(mol):
            self.ff = AllChem.UFFGetMoleculeForceField(mol, ignoreInterfragInteractions=False)
            self.name = "UFF"
        else:
            raise SamplingError("no_force_field", "neither MMFF94 nor UFF has parameters for this molecule")

    def forces(self, pos: np.ndarray) -> np.ndarray:
        """-dE/dx in kcal/mol/Å, (N, 3).

        rdkit's CalcGrad(pos) reuses terms cached by the last CalcEnergy (measured: wrong gradients by up to
        100 kcal/mol/Å otherwise), so the energy is evaluated at ``pos`` first.
        """
        flat = pos.ravel().tolist()
        self.ff.CalcEnergy(flat)
        return -np.asarray(self.ff.CalcGrad(flat)).reshape(-1, 3)

    def energy(self, pos: np.ndarray) -> float:
        return float(self.ff.CalcEnergy(pos.ravel().tolist()))

    def _scratch_force_field(self, pos: np.ndarray):
        """(scratch molecule, a fresh force field of this molecule's kind on it at ``pos`` Å): a copy, so that the
        molecule's own conformers and force field stay untouched. The caller keeps the scratch molecule alive while
        it uses the force field (rdkit's force field points into it; measured: a segfault otherwise)."""
        from rdkit import Chem
        from rdkit.Chem import AllChem

        scratch = Chem.Mol(self.mol)
        scratch.RemoveAllConformers()
        conf = Chem.Conformer(len(pos))
        for i, p in enumerate(np.asarray(pos, dtype=np.float64)):
            conf.SetAtomPosition(i, p.tolist())
        scratch.AddConformer(conf, assignId=True)
        if self.name == "MMFF94":
            props = AllChem.MMFFGetMoleculeProperties(scratch)
            return scratch, AllChem.MMFFGetMoleculeForceField(scratch, props)
        return scratch, AllChem.UFFGetMoleculeForceField(scratch)

    def minimise(self, pos: np.ndarray, max_iters: int = 500) -> np.ndarray:
        """Positions after rdkit's BFGS minimisation from ``pos`` (Å)."""
        _scratch, ff = self._scratch_force_field(pos)
        ff.Minimize(maxIts=max_iters)
        return np.array(ff.Positions()).reshape(-1, 3)

    def minimise_restrained(
        self, pos: np.ndarray, pair: tuple[int, int], lo: float, hi: float, max_iters: int = 2000
    ) -> tuple[np.ndarray, float]:
        """(positions Å, energy kcal/mol including the restraint) after minimising from ``pos`` with the distance of
        atoms ``pair`` held within ``lo``-``hi`` Å (100 kcal/mol/Å^2 outside the window)."""
        _scratch, ff = self._scratch_force_field(pos)
        if self.name == "MMFF94":
            ff.MMFFAddDistanceConstraint(*pair, False, lo, hi, 100.0)
        else:
            ff.UFFAddDistanceConstraint(*pair, False, lo, hi, 100.0)
        ff.Minimize(maxIts=max_iters)
        return np.array(ff.Positions()).reshape(-1, 3), float(ff.CalcEnergy())


def thermal_md(
    surface: ClassicalSurface,
    pos0: np.ndarray,
    temperature: float,
    n_steps: int,
    rng: np.random.Generator,
    timestep_fs: float = 0.5,
    friction_per_fs: float = 0.02,
) -> np.ndarray:
    """Positions (Å) after ``n_steps`` of BAOAB Langevin MD at ``temperature`` K on the classical surface.

    Velocities start from the Maxwell-Boltzmann distribution; the centre-of-mass drift is irrelevant
    (the labels are translation invariant). Raises SamplingError(``md_unstable``) on non-finite positions.
    """
    m = surface.masses[:, None]
    kt = BOLTZMANN_KCAL_PER_MOL_K * temperature
    sigma_v = np.sqrt(kt / m * KCAL_PER_MOL_A_PER_AMU_TO_A_PER_FS2)  # Å/fs
    acc = KCAL_PER_MOL_A_PER_AMU_TO_A_PER_FS2 / m
    c1 = np.exp(-friction_per_fs * timestep_fs)
    c2 = np.sqrt(1.0 - c1 * c1)
    x = np.array(pos0, dtype=np.float64)
    v = rng.normal(size=x.shape) * sigma_v
    f = surface.forces(x)
    half = 0.5 * timestep_fs
    for _ in range(n_steps):
        v += half * acc * f
        x += half * v
        v = c1 * v + c2 * sigma_v * rng.normal(size=x.shape)
        x += half * v
        f = surface.forces(x)
        v += half * acc * f
    if not np.isfinite(x).all():
        raise SamplingError("md_unstable", "classical MD produced non-finite positions")
    return x


def _graph(mol) -> tuple[np.ndarray, list[tuple[int, int]]]:
    from rdkit import Chem

    bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
    return Chem.GetDistanceMatrix(mol), bonds


def _contact_ratios(numbers: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """(N, N) distance / (sum of covalent radii) of every pair; inf on the diagonal."""
    rc = covalent_radii(numbers)
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    ratio = d / (rc[:, None] + rc[None])
    ratio[np.diag_indices(len(pos))] = np.inf
    return ratio


def min_contact_ratio(numbers: np.ndarray, pos: np.ndarray) -> float:
    """Smallest distance / (sum of covalent radii) over all pairs (the shortest contact, relative)."""
    return float(_contact_ratios(numbers, pos).min())


@dataclass
class Distortion:
    positions: np.ndarray  # Å
    atoms: tuple[int, int]  # the pair / bond that was changed
    ratio: float  # new distance / reference (sum of covalent radii, or the old bond length)


def compress_pair(
    mol,
    pos: np.ndarray,
    rng: np.random.Generator,
    lo: float = 0.6,
    hi: float = 0.8,
    h_pair_prob: float = 0.5,
    max_distance: float = 2.6,
) -> Distortion:
    """Push a random non-bonded pair (graph distance >= 2, at least one H) to u x (r_cov,i + r_cov,j), u in [lo, hi].

    Only pairs closer than ``max_distance`` Å are candidates (1-3 pairs and close contacts: a short move, so
    the atoms' own bonds stay near their lengths); both atoms of an H-H pair move half-way each, in an H-X
    pair only the H. With probability ``h_pair_prob`` the pair is H-H (the contacts that fused H atoms in
    MD), else H-X. Heavy-heavy contacts come from :func:`scale_bond` (measured: a heavy 1-3 pair at 0.7 x
    gives 150-240 eV/Å).
    Other contacts stay above 0.5 x their covalent sum (up to 10 draws), else SamplingError(``no_contact``).
    """
    numbers = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    rc = covalent_radii(numbers)
    dist, _ = _graph(mol)
    d_now = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    ii, jj = np.where(np.triu((dist >= 2) & (d_now < max_distance)))
    has_h = (numbers[ii] == 1) | (numbers[jj] == 1)
    ii, jj = ii[has_h], jj[has_h]
    if len(ii) == 0:
        raise SamplingError("no_contact", "molecule has no non-bonded pair with an H atom")
    hh = (numbers[ii] == 1) & (numbers[jj] == 1)
    if hh.any() and rng.random() < h_pair_prob:
        ii, jj = ii[hh], jj[hh]
    elif (~hh).any():
        ii, jj = ii[~hh], jj[~hh]
    for _ in range(10):
        k = int(rng.integers(len(ii)))
        i, j = int(ii[k]), int(jj[k])
        u = float(rng.uniform(lo, hi))
        target = u * (rc[i] + rc[j])
        vec = pos[j] - pos[i]
        d = float(np.linalg.norm(vec))
        if d <= target:
            continue
        new = pos.copy()
        w_i = 0.5 if numbers[i] == numbers[j] else float(numbers[i] == 1)  # H-X: only the H moves
        new[i] += w_i * (d - target) * vec / d
        new[j] -= (1.0 - w_i) * (d - target) * vec / d
        others = _min_other_ratio(numbers, new, (i, j))
        if others >= 0.5:
            return Distortion(new, (i, j), u)
    raise SamplingError("no_contact", "no pair could be compressed without a second clash")


def _min_other_ratio(numbers: np.ndarray, pos: np.ndarray, pair: tuple[int, int]) -> float:
    """:func:`min_contact_ratio` over every pair but ``pair``."""
    ratio = _contact_ratios(numbers, pos)
    ratio[pair[0], pair[1]] = ratio[pair[1], pair[0]] = np.inf
    return float(ratio.min())


def _side(n_atoms: int, bonds: list[tuple[int, int]], cut: tuple[int, int]) -> set[int] | None:
    """Atoms on ``cut[1]``'s side when bond ``cut`` is removed, or None when the bond is in a ring."""
    adj: list[list[int]] = [[] for _ in range(n_atoms)]
    for a, b in bonds:
        if {a, b} != set(cut):
            adj[a].append(b)
            adj[b].append(a)
    seen = {cut[1]}
    stack = [cut[1]]
    while stack:
        for nb in adj[stack.pop()]:
            if nb == cut[0]:
                return None
            if nb not in seen:
                seen.add(nb)
                stack.append(nb)
    return seen


def scale_bond(
    mol, pos: np.ndarray, rng: np.random.Generator, lo: float, hi: float, bond: tuple[int, int] | None = None
) -> Distortion:
    """Scale a bond's length by u in [lo, hi] (u < 1 compresses, u > 1 stretches): ``bond`` (atom indices of a
    bond of ``mol``), else a random one.

    A chain bond moves the smaller side rigidly along the bond axis; a ring bond moves only its end atom.
    """
    n = mol.GetNumAtoms()
    _, bonds = _graph(mol)
    if not bonds:
        raise SamplingError("no_bond", "molecule has no bond")
    if bond is None:
        a, b = bonds[int(rng.integers(len(bonds)))]
    elif mol.GetBondBetweenAtoms(*bond) is None:
        raise ValueError(f"atoms {bond} are not bonded")
    else:
        a, b = bond
    side = _side(n, bonds, (a, b))
    if side is not None and len(side) > n - len(side):
        a, b = b, a
        side = set(range(n)) - side
    moving = sorted(side) if side is not None else [b]
    u = float(rng.uniform(lo, hi))
    vec = pos[b] - pos[a]
    d = float(np.linalg.norm(vec))
    new = pos.copy()
    new[moving] += (u - 1.0) * vec
    return Distortion(new, (a, b), u) if d > 0 else Distortion(pos.copy(), (a, b), 1.0)


def bond_query(smarts: str):
    """The rdkit query of a SMARTS of two bonded atoms (e.g. ``[#6]-[Br]``); ValueError naming it otherwise."""
    from rdkit import Chem

    query = Chem.MolFromSmarts(smarts)
    if query is None or query.GetNumAtoms() != 2 or query.GetNumBonds() != 1:
        raise ValueError(f"{smarts!r} is not a two-atom bond SMARTS (two bonded atoms, e.g. [#6]-[Br])")
    return query


def matching_bonds(mol, patterns: Sequence[str]) -> list[tuple[int, int]]:
    """Bonds of ``mol`` (sorted atom-index pairs, each once) that match any of the two-atom SMARTS ``patterns``
    (e.g. ``[#6]-[Br]``), in pattern order."""
    out: list[tuple[int, int]] = []
    for smarts in patterns:
        for i, j in mol.GetSubstructMatches(bond_query(smarts)):
            pair = (min(i, j), max(i, j))
            if mol.GetBondBetweenAtoms(i, j) is not None and pair not in out:
                out.append(pair)
    return out


def hbond_triples(mol) -> list[tuple[int, int, int]]:
    """(hydrogen, donor, acceptor) atom indices of every intramolecular hydrogen-bond motif of ``mol`` (rdkit, with
    explicit H; :func:`transip_md.train.molecules.hbond_pairs`), one row per H on the donor."""
    from .molecules import hbond_pairs

    out = []
    for d, a in hbond_pairs(mol):
        for nb in mol.GetAtomWithIdx(d).GetNeighbors():
            if nb.GetAtomicNum() == 1:
                out.append((nb.GetIdx(), d, a))
    return out


def hbonded_conformer(mol, h: int, a: int, lo: float = 1.7, hi: float = 2.1) -> tuple[np.ndarray, float]:
    """Positions (Å) and restrained MMFF94/UFF energy (kcal/mol) of the conformer of ``mol`` that holds H ``h``
    within ``lo``-``hi`` Å of acceptor ``a`` at the lowest energy: every conformer of ``mol`` minimised with that
    distance restrained (:meth:`ClassicalSurface.minimise_restrained`), the lowest-energy one kept. Energies of
    different (h, a) pairs of one molecule compare (same force field): the lowest is its most natural hydrogen bond.
    SamplingError(``no_force_field``) without parameters."""
    surface = ClassicalSurface(mol)
    results = [surface.minimise_restrained(c.GetPositions(), (h, a), lo, hi) for c in mol.GetConformers()]
    return min(results, key=lambda r: r[1])  # embed() gives at least one conformer


def push_hydrogen(pos: np.ndarray, h: int, a: int, distance: float) -> Distortion:
    """Move hydrogen ``h`` straight towards acceptor ``a`` until it is ``distance`` Å from it (the donor-H bond
    stretches: the first half of a proton transfer); ratio: the new H...A distance over the old one."""
    vec = pos[h] - pos[a]
    d = float(np.linalg.norm(vec))
    new = pos.copy()
    new[h] = pos[a] + vec * (distance / d)
    return Distortion(new, (h, a), distance / d)


def squeeze_hbond(mol, pos: np.ndarray, d: int, a: int, distance: float) -> Distortion:
    """Bring donor ``d`` (with the H atoms on it) and acceptor ``a`` to ``distance`` Å, each moving half-way along
    their axis; ratio: the new D...A distance over the old one."""
    vec = pos[a] - pos[d]
    now = float(np.linalg.norm(vec))
    shift = 0.5 * (now - distance) * vec / now
    donor = [d] + [nb.GetIdx() for nb in mol.GetAtomWithIdx(d).GetNeighbors() if nb.GetAtomicNum() == 1]
    new = pos.copy()
    new[donor] += shift
    new[a] -= shift
    return Distortion(new, (d, a), distance / now)
