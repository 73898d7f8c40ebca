"""Training data: read extxyz (also .gz), ASE databases (SQLite ``.db``, OMol25 ``.aselmdb``) and folders.

A :class:`Frame` holds one labelled structure (Å, eV, eV/Å, total charge in e, spin multiplicity).
Energies and forces come from the stored calculator results, ``atoms.info``/``atoms.arrays``
(``energy``/``forces``, or ``REF_energy``/``REF_forces``), or a database row's ``data``; charge and
spin from ``info``, the row's key-value pairs, ``row.data`` or ``row.data['info']`` (OMol25 keeps them
there; ``multiplicity`` is accepted for ``spin``). Errors name the file and the frame index;
``skip_bad=True`` skips bad frames (and unreadable files) and counts them in :class:`ReadReport`.

:func:`split` is deterministic and groups frames by molecule identity (``mol_id``) so validation
molecules are never seen in training; :func:`make_batches` packs structures of different sizes into
batches of at most ``max_atoms`` atoms; :func:`collate` builds the packed edge list the model takes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..model.engine import GlobalModelError, edge_topology, electron_parity_ok

EXTXYZ_SUFFIXES = (".extxyz", ".xyz", ".extxyz.gz", ".xyz.gz")
DB_SUFFIXES = (".db", ".aselmdb", ".json")
COMPACT_SUFFIXES = (".npz",)


class DataError(ValueError):
    """A file or frame that cannot be used for training; the message names the file and frame."""


@dataclass
class Frame:
    numbers: np.ndarray  # (N,) int64 atomic numbers
    positions: np.ndarray  # (N, 3) Å
    energy: float  # eV
    forces: np.ndarray  # (N, 3) eV/Å
    charge: int = 0
    spin: int = 1
    mol_id: str | None = None
    source: str = ""
    cell: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))
    pbc: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=bool))
    geometry_id: int = -1  # compact format: frames of one geometry in several charge/spin states share it
    sampler: str = ""  # compact format: which sampler made the geometry
    heldout: bool = False  # compact format: the molecule is in the set's held-out split

    @property
    def n_atoms(self) -> int:
        return int(self.numbers.shape[0])


@dataclass
class ReadReport:
    files: int = 0
    frames: int = 0
    skipped_frames: int = 0
    skipped_files: int = 0
    problems: list[str] = field(default_factory=list)

    def add_problem(self, msg: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(msg)

    def skip(self, msg: str, whole_file: bool = False) -> None:
        """Count one skipped frame (or file, ``whole_file``) and keep its message."""
        if whole_file:
            self.skipped_files += 1
        else:
            self.skipped_frames += 1
        self.add_problem(msg)


# ---------------------------------------------------------------------------------------------- reading
def _first(mappings: Iterable[Any], keys: Sequence[str]) -> Any:
    for m in mappings:
        if not isinstance(m, dict):
            continue
        for k in keys:
            if k in m and m[k] is not None:
                return m[k]
    return None


def _frame_from_atoms(atoms, extra: Sequence[dict], where: str, elements: set[int] | None) -> Frame:
    """Convert one ASE Atoms (plus database row dicts in ``extra``) into a checked Frame."""
    results = dict(atoms.calc.results) if atoms.calc is not None else {}
    sources = [results, atoms.info, *extra]
    energy = _first(sources, ("energy", "REF_energy", "total_energy", "free_energy"))
    forces = _first([results, atoms.arrays, *extra], ("forces", "REF_forces"))
    if energy is None:
        raise DataError(f"{where}: frame has no energy")
    if forces is None:
        raise DataError(f"{where}: frame has no forces")
    forces = np.asarray(forces, dtype=np.float64)
    if forces.shape != (len(atoms), 3):
        raise DataError(f"{where}: forces have shape {forces.shape}, expected ({len(atoms)}, 3)")
    info_sources = [atoms.info, *extra]
    charge = _first(info_sources, ("charge", "total_charge"))
    spin = _first(info_sources, ("spin", "multiplicity", "spin_multiplicity"))
    mol_id = _first(info_sources, ("mol_id", "molecule_id", "source_id"))
    numbers = np.asarray(atoms.numbers, dtype=np.int64)
    if elements is not None:
        bad = [int(z) for z in numbers if int(z) not in elements]
        if bad:
            from ..validation import symbol

            raise DataError(f"{where}: unknown element {symbol(bad[0])} (allowed: {sorted(elements)})")
    q = int(round(float(charge))) if charge is not None else 0
    m = int(round(float(spin))) if spin is not None else 1
    z_sum = int(numbers.sum())
    n_el = z_sum - q
    if not electron_parity_ok(z_sum, q, m):
        raise DataError(f"{where}: impossible charge {q} / multiplicity {m} for {n_el} electrons")
    pos = np.asarray(atoms.positions, dtype=np.float64)
    if not np.isfinite(pos).all() or not np.isfinite(forces).all() or not np.isfinite(float(energy)):
        raise DataError(f"{where}: non-finite positions, energy or forces")
    return Frame(
        numbers=numbers,
        positions=pos,
        energy=float(energy),
        forces=forces,
        charge=q,
        spin=m,
        mol_id=None if mol_id is None else str(mol_id),
        source=where,
        cell=np.asarray(atoms.cell.array, dtype=np.float64),
        pbc=np.asarray(atoms.pbc, dtype=bool),
    )


def _extxyz_source(path: Path) -> str | io.StringIO:
    """What ase.io reads: the path, or for ``.gz`` the whole decompressed text in memory.

    ASE seeks backwards while parsing, which a gzip stream can only do by decompressing again from the start
    (reported ~40 s for the 1 MB shipped set; 0.6 s read from memory).
    """
    if not path.name.lower().endswith(".gz"):
        return str(path)
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return io.StringIO(fh.read())


def _iter_file(path: Path) -> Iterable[tuple[Any, list[dict]]]:
    name = path.name.lower()
    if name.endswith(EXTXYZ_SUFFIXES):
        from ase.io import iread

        for atoms in iread(_extxyz_source(path), index=":", format="extxyz"):
            yield atoms, []
    elif name.endswith(DB_SUFFIXES):
        from ase.db import connect

        kwargs = {"readonly": True} if name.endswith(".aselmdb") else {}
        with connect(str(path), **kwargs) as db:
            for row in db.select():
                atoms = row.toatoms()
                data = dict(row.get("data", {}) or {})
                info = data.get("info") if isinstance(data.get("info"), dict) else {}
                # ASE overwrites a key-value pair named 'charge' with the sum of initial charges: ignore it.
                kvp = {k: v for k, v in row.key_value_pairs.items() if k != "charge"}
                yield atoms, [data, info, kvp]
    else:
        raise DataError(f"{path}: unknown file type (expected {EXTXYZ_SUFFIXES + DB_SUFFIXES + COMPACT_SUFFIXES})")


def list_files(path: str | os.PathLike) -> list[Path]:
    """``path`` itself, or every data file below a folder (sorted, recursive)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and p.name.lower().endswith(EXTXYZ_SUFFIXES + DB_SUFFIXES + COMPACT_SUFFIXES)
        )
        if not files:
            raise DataError(f"{path}: folder holds no extxyz, ASE database or compact .npz files")
        return files
    if not path.exists():
        raise DataError(f"{path}: file not found")
    return [path]


def read_frames(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    elements: Sequence[int] | None = None,
    skip_bad: bool = False,
) -> tuple[list[Frame], ReadReport]:
    """Read every frame of ``paths`` (files or folders). Raises :class:`DataError` unless ``skip_bad``."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    allowed = None if elements is None else {int(z) for z in elements}
    frames: list[Frame] = []
    report = ReadReport()
    for p in paths:
        for f in list_files(p):
            report.files += 1
            if f.name.lower().endswith(COMPACT_SUFFIXES):
                _read_compact_into(f, allowed, skip_bad, frames, report)
                continue
            index = -1
            try:
                for index, (atoms, extra) in enumerate(_iter_file(f)):
                    where = f"{f}: frame {index}"
                    try:
                        frame = _frame_from_atoms(atoms, extra, where, allowed)
                    except DataError as exc:
                        if not skip_bad:
                            raise
                        report.skip(str(exc))
                        continue
                    frames.append(frame)
                    report.frames += 1
            except DataError:
                raise
            except Exception as exc:  # noqa: BLE001 - parser errors of any kind become a named DataError
                msg = f"{f}: cannot be read (at frame {index + 1}): {type(exc).__name__}: {exc}"
                if not skip_bad:
                    raise DataError(msg) from exc
                report.skip(msg, whole_file=True)
    return frames, report


# ---------------------------------------------------------------------------------------------- stats
def statistics(frames: Sequence[Frame]) -> dict[str, Any]:
    """Element counts, structure sizes, charge/spin states and number of distinct molecules."""
    from ..validation import symbol

    sizes = np.array([f.n_atoms for f in frames]) if frames else np.zeros(1)
    elements: Counter[str] = Counter()
    for f in frames:
        elements.update(symbol(int(z)) for z in f.numbers)
    states = Counter(f"{f.charge:+d}/{f.spin}" for f in frames)
    return {
        "frames": len(frames),
        "molecules": len({f.mol_id or f.source for f in frames}),
        "atoms": int(sizes.sum()) if frames else 0,
        "size_min": int(sizes.min()),
        "size_mean": float(sizes.mean()),
        "size_max": int(sizes.max()),
        "elements": dict(sorted(elements.items())),
        "charge_spin": dict(sorted(states.items())),
    }


def data_hash(frames: Sequence[Frame]) -> str:
    """SHA-256 over numbers, positions, energies, forces, charge and spin (provenance)."""
    h = hashlib.sha256()
    for f in frames:
        h.update(f.numbers.astype(np.int64).tobytes())
        h.update(np.round(f.positions, 8).tobytes())
        h.update(np.float64(f.energy).tobytes())
        h.update(np.round(f.forces, 8).tobytes())
        h.update(np.array([f.charge, f.spin], dtype=np.int64).tobytes())
    return h.hexdigest()


def molecule_key(frame: Frame, index: int) -> str:
    """The molecule a frame belongs to for splitting and sampling: its ``mol_id``, or (without one) the frame
    ``index`` itself, a molecule of its own."""
    return frame.mol_id if frame.mol_id is not None else f"#frame{index}"


def split(frames: Sequence[Frame], val_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Deterministic (train, validation) frame indices; all frames of one ``mol_id`` on the same side.

    Frames without ``mol_id`` are their own group. Groups are shuffled with ``seed`` and taken into
    validation until it holds at least ``val_fraction`` of the frames (at least one group).
    """
    groups: dict[str, list[int]] = {}
    for i, f in enumerate(frames):
        groups.setdefault(molecule_key(f, i), []).append(i)
    keys = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(keys))
    target = val_fraction * len(frames)
    val: list[int] = []
    train: list[int] = []
    for rank, k in enumerate(order):
        idx = groups[keys[k]]
        if val_fraction > 0 and (len(val) < target or rank == 0) and len(keys) > 1:
            val.extend(idx)
        else:
            train.extend(idx)
    return sorted(train), sorted(val)


# ---------------------------------------------------------------------------------------------- batches
def geometry_key(frame: Frame, index: int) -> tuple:
    """Frames with the same key are one geometry in several charge/spin states (vertical group); a frame
    without a geometry id is a group of its own."""
    if frame.geometry_id < 0:
        return ("frame", index)
    return (frame.mol_id, frame.source.rpartition(":")[0] or frame.source, frame.geometry_id)


def geometry_units(indices: Sequence[int], frames: Sequence[Frame]) -> list[list[int]]:
    """``indices`` grouped by :func:`geometry_key`, groups in order of first appearance."""
    units: dict[tuple, list[int]] = {}
    for i in indices:
        units.setdefault(geometry_key(frames[i], i), []).append(i)
    return list(units.values())


def make_batches(
    indices: Sequence[int],
    frames: Sequence[Frame],
    max_atoms: int,
    rng: np.random.Generator | None = None,
    keep_geometries: bool = False,
) -> list[list[int]]:
    """Pack frames (shuffled with ``rng`` if given) greedily into batches of at most ``max_atoms`` atoms.

    ``keep_geometries``: shuffle and pack whole geometry groups (:func:`geometry_units`), so the states of
    one geometry share a batch (what the vertical-gap loss compares); a group larger than ``max_atoms`` is
    packed in parts.
    """
    units = geometry_units(indices, frames) if keep_geometries else [[i] for i in indices]
    if rng is not None:
        units = [units[i] for i in rng.permutation(len(units))]
    batches: list[list[int]] = []
    current: list[int] = []
    n = 0
    for unit in units:
        if current and n + sum(frames[i].n_atoms for i in unit) > max_atoms:
            batches.append(current)
            current, n = [], 0
        for i in unit:
            size = frames[i].n_atoms
            if size > max_atoms:
                raise DataError(f"{frames[i].source}: {size} atoms exceed max_atoms={max_atoms}")
            if current and n + size > max_atoms:
                batches.append(current)
                current, n = [], 0
            current.append(i)
            n += size
    if current:
        batches.append(current)
    return batches


@dataclass
class Batch:
    """Packed structures: atoms concatenated, edges i -> j (global indices), per-structure labels."""

    species: Tensor  # (N,)
    positions: Tensor  # (N, 3) float64
    edge_index: Tensor  # (2, E)
    shift_vec: Tensor  # (E, 3) float64 cell shift of each edge (Å)
    batch: Tensor  # (N,)
    charge: Tensor  # (B,) float64
    spin: Tensor  # (B,) float64
    n_atoms: Tensor  # (B,) float64
    energy: Tensor  # (B,) float64 eV
    forces: Tensor  # (N, 3) float64 eV/Å
    frame_ids: list[int]
    geometry: Tensor | None = None  # (B,) long: structures with the same value are one geometry (vertical group)

    @property
    def n_structures(self) -> int:
        return int(self.charge.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        """The same batch with every tensor on ``device`` (itself when it is there already)."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in moved.items():
            if isinstance(value, Tensor):
                moved[name] = value.to(device)
        return Batch(**moved)

    def edge_vectors(self, rotations: Tensor | None = None) -> Tensor:
        """r_j - r_i (+ shift) in Å; rotated by each structure's rotation (B, 3, 3) when given."""
        vec = self.positions[self.edge_index[1]] - self.positions[self.edge_index[0]] + self.shift_vec
        if rotations is not None:
            rot = rotations[self.batch[self.edge_index[0]]]
            vec = torch.einsum("eij,ej->ei", rot, vec)
        return vec

    def rotated_forces(self, rotations: Tensor) -> Tensor:
        return torch.einsum("nij,nj->ni", rotations[self.batch], self.forces)


class TopologyCache:
    """Edge topologies per frame (rotation-invariant, so computed once per frame)."""

    def __init__(self, frames: Sequence[Frame], cutoff: float | None) -> None:
        self.frames = frames
        self.cutoff = cutoff
        self._cache: dict[int, Any] = {}

    def __call__(self, i: int):
        topo = self._cache.get(i)
        if topo is None:
            f = self.frames[i]
            try:
                topo = edge_topology(self.cutoff, f.positions, f.cell, f.pbc, f.source)
            except GlobalModelError as exc:  # a periodic frame for a global model: a data error (CLI exit 2)
                raise DataError(str(exc)) from exc
            self._cache[i] = topo
        return topo


def collate(frame_ids: Sequence[int], frames: Sequence[Frame], topologies: TopologyCache) -> Batch:
    species, pos, forces, src, dst, shifts, batch = [], [], [], [], [], [], []
    offset = 0
    for b, i in enumerate(frame_ids):
        f = frames[i]
        topo = topologies(i)
        species.append(f.numbers)
        pos.append(f.positions)
        forces.append(f.forces)
        src.append(topo.src + offset)
        dst.append(topo.dst + offset)
        shifts.append(topo.shifts.astype(np.float64) @ f.cell)
        batch.append(np.full(f.n_atoms, b, dtype=np.int64))
        offset += f.n_atoms
    sel = [frames[i] for i in frame_ids]
    return Batch(
        species=torch.from_numpy(np.concatenate(species)),
        positions=torch.from_numpy(np.concatenate(pos)),
        edge_index=torch.from_numpy(np.stack([np.concatenate(src), np.concatenate(dst)])),
        shift_vec=torch.from_numpy(np.concatenate(shifts).reshape(-1, 3)),
        batch=torch.from_numpy(np.concatenate(batch)),
        charge=torch.tensor([float(f.charge) for f in sel], dtype=torch.float64),
        spin=torch.tensor([float(f.spin) for f in sel], dtype=torch.float64),
        n_atoms=torch.tensor([float(f.n_atoms) for f in sel], dtype=torch.float64),
        energy=torch.tensor([f.energy for f in sel], dtype=torch.float64),
        forces=torch.from_numpy(np.concatenate(forces)),
        frame_ids=list(frame_ids),
        geometry=torch.tensor(group_labels([geometry_key(frames[i], i) for i in frame_ids]), dtype=torch.long),
    )


def group_labels(keys: Sequence[tuple]) -> list[int]:
    """0, 1, ... per distinct key, in order of first appearance."""
    seen: dict[tuple, int] = {}
    return [seen.setdefault(k, len(seen)) for k in keys]


def frame_to_atoms(frame: Frame):
    """ASE Atoms with info charge/spin (for symmetry_error and the calculators)."""
    from ase import Atoms

    atoms = Atoms(numbers=frame.numbers, positions=frame.positions, cell=frame.cell, pbc=frame.pbc)
    atoms.info.update(charge=frame.charge, spin=frame.spin)
    return atoms


# ---------------------------------------------------------------------------------------------- compact format
#: Format tag of the compact labelled-data file (one compressed .npz; documented in docs/data.md).
COMPACT_FORMAT = "transip-frames/1"
_COMPACT_KEYS = {
    "format": ((), "U"),
    "meta": ((), "U"),
    "mol_id": (("M",), "U"),
    "mol_smiles": (("M",), "U"),
    "mol_source": (("M",), "U"),
    "mol_heldout": (("M",), "b"),
    "mol_natoms": (("M",), "i"),
    "mol_numbers": (("MA",), "u"),
    "frame_mol": (("F",), "i"),
    "geometry": (("F",), "i"),
    "charge": (("F",), "i"),
    "spin": (("F",), "i"),
    "sampler": (("F",), "u"),
    "sampler_names": (("S",), "U"),
    "param": (("F",), "f"),
    "energy": (("F",), "f"),
    "positions": (("A", 3), "f"),
    "forces": (("A", 3), "f"),
}


def write_compact(
    path: str | os.PathLike,
    mol_ids: Sequence[str],
    mol_smiles: Sequence[str],
    mol_sources: Sequence[str],
    mol_heldout: Sequence[bool],
    parts: Sequence[dict[str, np.ndarray]],
    sampler_names: Sequence[str],
    meta: dict[str, Any],
) -> None:
    """Write molecules and their frames as one compressed .npz (float32 Å / eV/Å, float64 eV), atomically.

    ``parts[k]`` holds molecule k's ``numbers`` (N,), ``positions``/``forces`` (F_k, N, 3), ``energy``,
    ``charge``, ``spin``, ``geometry`` (per-molecule geometry ids, made global here), ``sampler``, ``param``.
    """
    import json

    from ..atomic_io import atomic_write

    geo_offset = np.cumsum([0] + [int(p["geometry"].max()) + 1 if len(p["geometry"]) else 0 for p in parts])
    cat = lambda key, dtype: np.concatenate([np.asarray(p[key]) for p in parts]).astype(dtype)  # noqa: E731
    arrays = {
        "format": np.array(COMPACT_FORMAT),
        "meta": np.array(json.dumps(meta)),
        "mol_id": np.array(list(mol_ids), dtype=str),
        "mol_smiles": np.array(list(mol_smiles), dtype=str),
        "mol_source": np.array(list(mol_sources), dtype=str),
        "mol_heldout": np.array(list(mol_heldout), dtype=bool),
        "mol_natoms": np.array([len(p["numbers"]) for p in parts], dtype=np.int32),
        "mol_numbers": cat("numbers", np.uint8),
        "frame_mol": np.concatenate([np.full(len(p["energy"]), k, np.int32) for k, p in enumerate(parts)]),
        "geometry": np.concatenate([p["geometry"] + geo_offset[k] for k, p in enumerate(parts)]).astype(np.int32),
        "charge": cat("charge", np.int8),
        "spin": cat("spin", np.int8),
        "sampler": cat("sampler", np.uint8),
        "sampler_names": np.array(list(sampler_names), dtype=str),
        "param": cat("param", np.float32),
        "energy": cat("energy", np.float64),
        "positions": np.concatenate([p["positions"].reshape(-1, 3) for p in parts]).astype(np.float32),
        "forces": np.concatenate([p["forces"].reshape(-1, 3) for p in parts]).astype(np.float32),
    }
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        os.chmod(tmp, 0o644)


def load_compact(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a compact file, checked for completeness and consistent sizes (DataError otherwise)."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such data file: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = sorted(set(_COMPACT_KEYS) - set(z.files))
            if missing:
                raise DataError(f"{path}: compact data file lacks arrays {missing} (truncated or not this format)")
            arrays = {k: z[k] for k in _COMPACT_KEYS}
    except DataError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise DataError(f"{path}: compact data file is truncated or corrupt: {type(exc).__name__}: {exc}") from exc
    if str(arrays["format"]) != COMPACT_FORMAT:
        raise DataError(f"{path}: format {str(arrays['format'])!r}, this reader knows {COMPACT_FORMAT!r}")
    _check_compact_sizes(path, arrays)
    return arrays


def _check_compact_sizes(path: Path, a: dict[str, np.ndarray]) -> None:
    n_mol = len(a["mol_id"])
    n_frames = len(a["energy"])
    for key, (shape, _) in _COMPACT_KEYS.items():
        want = {"M": n_mol, "F": n_frames}.get(shape[0]) if shape else None
        if want is not None and len(a[key]) != want:
            raise DataError(f"{path}: array {key!r} has {len(a[key])} rows, expected {want}")
    if int(a["mol_natoms"].sum()) != len(a["mol_numbers"]):
        raise DataError(
            f"{path}: mol_numbers has {len(a['mol_numbers'])} atoms, mol_natoms sums to {a['mol_natoms'].sum()}"
        )
    if n_frames and (a["frame_mol"].min() < 0 or a["frame_mol"].max() >= n_mol):
        raise DataError(f"{path}: frame_mol points outside the {n_mol} molecules")
    n_atoms = int(a["mol_natoms"][a["frame_mol"]].sum()) if n_frames else 0
    for key in ("positions", "forces"):
        if a[key].shape != (n_atoms, 3):
            raise DataError(f"{path}: {key} has shape {a[key].shape}, the frames need ({n_atoms}, 3)")


def _read_compact_into(
    path: Path, allowed: set[int] | None, skip_bad: bool, frames: list[Frame], report: ReadReport
) -> None:
    """Append the frames of a compact file (checks as for extxyz: elements, parity, finite values)."""
    try:
        a = load_compact(path)
    except DataError as exc:
        if not skip_bad:
            raise
        report.skip(str(exc), whole_file=True)
        return
    mol_start = np.concatenate([[0], np.cumsum(a["mol_natoms"])])
    natoms = a["mol_natoms"][a["frame_mol"]]
    start = np.concatenate([[0], np.cumsum(natoms)])
    names = [str(s) for s in a["sampler_names"]]
    mol_ids = [str(s) for s in a["mol_id"]]
    numbers_of = [a["mol_numbers"][mol_start[k] : mol_start[k + 1]].astype(np.int64) for k in range(len(mol_ids))]
    pos64 = a["positions"].astype(np.float64)
    frc64 = a["forces"].astype(np.float64)
    bad = _bad_compact_frames(a, numbers_of, allowed, pos64, frc64, start)
    for i in range(len(a["energy"])):
        if i in bad:
            if not skip_bad:
                raise DataError(f"{path}: frame {i}: {bad[i]}")
            report.skip(f"{path}: frame {i}: {bad[i]}")
            continue
        k = int(a["frame_mol"][i])
        frames.append(
            Frame(
                numbers=numbers_of[k],
                positions=pos64[start[i] : start[i + 1]],
                energy=float(a["energy"][i]),
                forces=frc64[start[i] : start[i + 1]],
                charge=int(a["charge"][i]),
                spin=int(a["spin"][i]),
                mol_id=mol_ids[k],
                source=f"{path}: frame {i}",
                geometry_id=int(a["geometry"][i]),
                sampler=names[int(a["sampler"][i])],
                heldout=bool(a["mol_heldout"][k]),
            )
        )
        report.frames += 1


def _bad_compact_frames(a, numbers_of, allowed, pos, frc, start) -> dict[int, str]:
    """Frame index -> problem, for the checks the extxyz reader makes per frame (vectorised)."""
    from ..validation import symbol

    bad: dict[int, str] = {}
    z_sum = np.array([int(n.sum()) for n in numbers_of], dtype=np.int64)[a["frame_mol"]]
    charge = a["charge"].astype(np.int64)
    m = a["spin"].astype(np.int64)
    n_el = z_sum - charge
    wrong = ~electron_parity_ok(z_sum, charge, m)
    for i in np.flatnonzero(wrong):
        bad[int(i)] = f"impossible charge {a['charge'][i]} / multiplicity {m[i]} for {n_el[i]} electrons"
    finite_atoms = np.isfinite(pos).all(axis=1) & np.isfinite(frc).all(axis=1)
    per_frame = np.logical_and.reduceat(finite_atoms, start[:-1]) if len(start) > 1 else np.ones(0, bool)
    for i in np.flatnonzero(~(per_frame & np.isfinite(a["energy"]))):
        bad.setdefault(int(i), "non-finite positions, energy or forces")
    if allowed is not None:
        for k, nums in enumerate(numbers_of):
            unknown = [int(z) for z in nums if int(z) not in allowed]
            if unknown:
                msg = f"unknown element {symbol(unknown[0])} (allowed: {sorted(allowed)})"
                for i in np.flatnonzero(a["frame_mol"] == k):
                    bad.setdefault(int(i), msg)
    return bad


def heldout_split(frames: Sequence[Frame]) -> tuple[list[int], list[int]]:
    """(train, held-out) frame indices by the data set's own per-molecule held-out flag (compact format).

    The held-out molecules were chosen when the set was built (about 10% of molecules, every element
    represented); all frames of a molecule are on one side. Frames read from other formats are train.
    """
    train: list[int] = []
    held: list[int] = []
    for i, f in enumerate(frames):
        (held if f.heldout else train).append(i)
    return train, held
