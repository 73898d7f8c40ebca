"""The first labeller (kept as the baseline of bench/label_throughput.py and for ``label --sampler xtb-md``).

SMILES -> rdkit conformer -> short Langevin MD with an ASE calculator -> extxyz.

Default calculator: GFN2-xTB through tblite. Each molecule is run in several charge/spin states (neutral
singlet, radical cation, radical anion, triplet by default; states with impossible electron parity are
skipped) at one of a few temperatures. Frames are kept only if every force component is below
``max_force`` eV/Å and no two atoms are closer than ``min_distance`` Å.

Resumable: each molecule is written to ``<output>.parts/<mol_id>.extxyz`` (atomically, also when it
failed, as an empty file), finished molecules are skipped, and the parts are gathered into ``output``
(``.gz`` compresses) at the end. Parallel over processes, one thread each (OMP_NUM_THREADS=1).
"""

from __future__ import annotations

import gzip
import importlib
import inspect
import io
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic_io import atomic_write
from ..model.engine import electron_parity_ok
from ..worker_pool import spawn_pool

#: (charge, multiplicity) states: neutral singlet, radical cation, radical anion, triplet.
DEFAULT_STATES: tuple[tuple[int, int], ...] = ((0, 1), (1, 2), (-1, 2), (0, 3))
DEFAULT_ELEMENTS = ("H", "C", "N", "O")


def default_smiles_file() -> Path:
    """rdkit's bundled NCI set (about 2,800 usable organic molecules of 8-30 atoms)."""
    from rdkit import RDConfig

    return Path(RDConfig.RDDataDir) / "NCI" / "first_5K.smi"


@dataclass
class LabelConfig:
    elements: Sequence[str] = DEFAULT_ELEMENTS
    min_atoms: int = 8
    max_atoms: int = 30
    states: Sequence[tuple[int, int]] = DEFAULT_STATES
    temperatures: Sequence[float] = (300.0, 500.0, 800.0)
    n_steps: int = 150  # MD steps per state
    sample_every: int = 30  # keep every n-th step
    timestep_fs: float = 1.0
    friction_per_fs: float = 0.02
    max_force: float = 15.0  # eV/Å, frames with a larger component are dropped
    min_distance: float = 0.7  # Å
    seed: int = 0
    calculator: str = "tblite"  # or "module:Class"
    calculator_kwargs: dict[str, Any] = field(default_factory=dict)


def read_smiles(path: str | os.PathLike, cfg: LabelConfig, limit: int | None = None) -> list[tuple[str, str]]:
    """(mol_id, smiles) of molecules made only of ``cfg.elements`` with min..max atoms incl. H.

    A line is ``SMILES [name]``; the id is ``<file stem>-<line number>``. Order is the file's, then
    ``limit`` molecules are taken after a seeded shuffle so small sets are diverse.
    """
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    allowed = set(cfg.elements)
    out = []
    stem = Path(path).name.split(".")[0]
    with open(path) as fh:
        for lineno, line in enumerate(fh):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            mol = Chem.MolFromSmiles(parts[0])
            if mol is None or len(Chem.GetMolFrags(mol)) != 1:
                continue
            if Chem.GetFormalCharge(mol) != 0 or any(a.GetNumRadicalElectrons() for a in mol.GetAtoms()):
                continue
            molh = Chem.AddHs(mol)
            symbols = {a.GetSymbol() for a in molh.GetAtoms()}
            if not symbols <= allowed or not cfg.min_atoms <= molh.GetNumAtoms() <= cfg.max_atoms:
                continue
            out.append((f"{stem}-{lineno}", Chem.MolToSmiles(mol)))
    if limit is not None and limit < len(out):
        rng = np.random.default_rng(cfg.seed)
        idx = np.sort(rng.choice(len(out), size=limit, replace=False))
        out = [out[i] for i in idx]
    return out


def conformer(smiles: str, seed: int):
    """ASE Atoms of one rdkit ETKDG conformer (MMFF-relaxed when possible), or None."""
    from ase import Atoms
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed) % (2**31)
    if AllChem.EmbedMolecule(mol, params) != 0:
        return None
    try:
        AllChem.MMFFOptimizeMolecule(mol, maxIters=500)
    except Exception:  # noqa: BLE001 - MMFF lacks parameters for a few molecules; ETKDG geometry is fine
        pass
    pos = mol.GetConformer().GetPositions()
    return Atoms(numbers=[a.GetAtomicNum() for a in mol.GetAtoms()], positions=pos)


def make_calculator(cfg: LabelConfig, charge: int, multiplicity: int):
    """tblite GFN2-xTB, or ``module:Class`` constructed with charge/multiplicity if it accepts them."""
    if cfg.calculator == "tblite":
        from tblite.ase import TBLite

        return TBLite(method="GFN2-xTB", charge=charge, multiplicity=multiplicity, verbosity=0)
    module_name, _, cls_name = cfg.calculator.partition(":")
    if not cls_name:
        raise ValueError(f"--calculator must be 'tblite' or 'module:Class', got {cfg.calculator!r}")
    cls = getattr(importlib.import_module(module_name), cls_name)
    kwargs = dict(cfg.calculator_kwargs)
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}
    if "charge" in params:
        kwargs.setdefault("charge", charge)
    if "multiplicity" in params:
        kwargs.setdefault("multiplicity", multiplicity)
    return cls(**kwargs)


def parity_ok(numbers: np.ndarray, charge: int, multiplicity: int) -> bool:
    """True if ``charge`` (e) and ``multiplicity`` are possible for these atoms (the engine's electron-parity rule)."""
    return bool(electron_parity_ok(int(np.sum(numbers)), charge, multiplicity))


def _min_distance(pos: np.ndarray) -> float:
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    d[np.diag_indices(len(pos))] = np.inf
    return float(d.min())


def label_molecule(mol_id: str, smiles: str, index: int, cfg: LabelConfig) -> tuple[list, dict[str, int]]:
    """Frames (ASE Atoms with energy/forces) for one molecule and counters of what happened."""
    from ase import units
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta

    stats = {"frames": 0, "rejected": 0, "scf_failures": 0, "parity_skipped": 0, "no_conformer": 0}
    rng = np.random.default_rng([cfg.seed, index])
    atoms0 = conformer(smiles, seed=cfg.seed * 100003 + index)
    if atoms0 is None:
        stats["no_conformer"] = 1
        return [], stats
    frames = []
    for charge, mult in cfg.states:
        if not parity_ok(atoms0.numbers, charge, mult):
            stats["parity_skipped"] += 1
            continue
        temperature = float(rng.choice(list(cfg.temperatures)))
        atoms = atoms0.copy()
        atoms.info.update(charge=charge, spin=mult)
        atoms.calc = make_calculator(cfg, charge, mult)
        thermalize_momenta(atoms, temperature, rng=rng)
        dyn = Langevin(
            atoms,
            timestep=cfg.timestep_fs * units.fs,
            temperature_K=temperature,
            friction=cfg.friction_per_fs / units.fs,
            fixcm=False,
            rng=rng,
        )
        try:
            for step in range(1, cfg.n_steps + 1):
                dyn.run(1)
                if step % cfg.sample_every:
                    continue
                energy = float(atoms.get_potential_energy())
                forces = np.array(atoms.get_forces())
                if np.abs(forces).max() > cfg.max_force or _min_distance(atoms.positions) < cfg.min_distance:
                    stats["rejected"] += 1
                    continue
                frame = atoms.copy()
                frame.arrays.pop("momenta", None)
                frame.info = {
                    "mol_id": mol_id,
                    "smiles": smiles,
                    "charge": charge,
                    "spin": mult,
                    "temperature": temperature,
                    "step": step,
                }
                frame.calc = SinglePointCalculator(frame, energy=energy, forces=forces)
                frames.append(frame)
                stats["frames"] += 1
        except Exception:  # noqa: BLE001 - SCF non-convergence etc.: drop the rest of this state
            stats["scf_failures"] += 1
    return frames, stats


def _write_part(path: Path, frames: list) -> None:
    from ase.io import write

    with atomic_write(path) as tmp:  # an empty file marks a molecule that gave no frames
        if frames:
            write(tmp, frames, format="extxyz")


def _worker(task: tuple[str, str, int, LabelConfig, str]) -> tuple[str, dict[str, int]]:
    mol_id, smiles, index, cfg, parts_dir = task
    frames, stats = label_molecule(mol_id, smiles, index, cfg)
    _write_part(Path(parts_dir) / f"{mol_id}.extxyz", frames)
    return mol_id, stats


def gather(parts_dir: Path, mol_ids: Sequence[str], output: Path) -> int:
    """Concatenate the parts of ``mol_ids`` (in that order) into ``output``; return the frame count."""
    buf = io.BytesIO()
    for mol_id in mol_ids:
        part = parts_dir / f"{mol_id}.extxyz"
        if part.exists():
            buf.write(part.read_bytes())
    data = buf.getvalue()
    with atomic_write(output) as tmp:
        if output.name.endswith(".gz"):
            # mtime=0 makes the file reproducible byte-for-byte.
            with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as gz:
                gz.write(data)
        else:
            tmp.write_bytes(data)
    return data.count(b"Properties=")


def run_labelling(
    smiles_file: str | os.PathLike | None,
    output: str | os.PathLike,
    cfg: LabelConfig,
    n_molecules: int | None = None,
    workers: int = 1,
    progress: bool = True,
    keep_parts: bool = True,
) -> dict[str, Any]:
    """Label ``n_molecules`` molecules from ``smiles_file`` into ``output``; returns a summary."""
    from tqdm import tqdm

    os.environ["OMP_NUM_THREADS"] = "1"  # before any worker imports tblite
    smiles_file = Path(smiles_file) if smiles_file else default_smiles_file()
    output = Path(output)
    molecules = read_smiles(smiles_file, cfg, limit=n_molecules)
    parts_dir = output.parent / (output.name + ".parts")
    parts_dir.mkdir(parents=True, exist_ok=True)
    todo = [
        (mid, smi, i, cfg, str(parts_dir))
        for i, (mid, smi) in enumerate(molecules)
        if not (parts_dir / f"{mid}.extxyz").exists()
    ]
    totals = {"molecules": len(molecules), "resumed": len(molecules) - len(todo)}
    bar = tqdm(total=len(todo), desc="label", unit="mol", disable=not progress)
    if workers <= 1:
        results = map(_worker, todo)
        for _, stats in results:
            for k, v in stats.items():
                totals[k] = totals.get(k, 0) + v
            bar.update()
    else:
        with spawn_pool(workers) as pool:
            for _, stats in pool.imap_unordered(_worker, todo):
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0) + v
                bar.update()
    bar.close()
    totals["total_frames"] = gather(parts_dir, [m for m, _ in molecules], output)
    totals["output"] = str(output)
    totals["smiles_file"] = str(smiles_file)
    totals["config"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
    if not keep_parts:
        shutil.rmtree(parts_dir)
    return totals
