"""Labelled data at scale: cheap classical geometries, GFN2-xTB single points only for the kept frames.

Per molecule (see docs/data.md for the plan and the counts): rdkit ETKDG conformers relaxed with
MMFF94 (UFF fallback); thermal geometries from Langevin MD on that classical surface at T drawn from
300-1200 K; a compressed non-bonded pair, a compressed bond and a stretched bond; the four
(charge, multiplicity) states labelled at the SAME geometries (a geometry id ties them together) and a few
GFN2-xTB steepest-descent steps in one charged/open-shell state (its own surface). Every problem is
counted by cause (molecule level: unparsable SMILES, embedding failure, no force field, element xTB cannot
do; frame level: impossible parity, SCF failure, non-finite result, force above the cap) and never stops
a run.

Resumable: each molecule writes ``<output>.parts/<index>.npz`` atomically (also when it failed), finished
molecules are skipped, and the parts are gathered into the compact format of
:func:`transip_md.train.data.write_compact`. Parallel over processes, one thread each (OMP_NUM_THREADS=1).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic_io import atomic_write
from ..model.engine import electron_parity_ok
from ..units import BOHR_TO_ANGSTROM, HARTREE_TO_EV
from ..worker_pool import spawn_pool
from .molecules import (
    DEFAULT_ELEMENTS,
    Molecule,
    Selection,
    select_bond_supplement,
    select_molecules,
    select_motif_molecules,
)
from .sampling import SamplingError, compress_pair, embed, matching_bonds, scale_bond, thermal_md

log = logging.getLogger(__name__)

#: (charge, multiplicity) states: neutral singlet, radical cation, radical anion, triplet.
DEFAULT_STATES: tuple[tuple[int, int], ...] = ((0, 1), (1, 2), (-1, 2), (0, 3))
#: Sampler names; a frame stores the index into this tuple.
SAMPLERS = (
    "thermal",
    "compress_pair",
    "compress_bond",
    "stretch_bond",
    "relax",
    "xtb_md",
    "stretch_target",
    "gfn2_min",
    "gfn2_md",
    "hbond_push",
    "compress_hbond",
)
#: Per-molecule plans: "classical" (MMFF94/UFF geometries, distortions, a few GFN2 relax steps; the shipped sets) or
#: "gfn2-dynamics" (GFN2-xTB minimum and GFN2-xTB Langevin frames; transip_md.train.label_dynamics).
#: "gfn2-hbond": the gfn2-dynamics frames from a hydrogen-bonded conformer, then that hydrogen bond pushed and
#: squeezed (transip_md.train.label_dynamics.gfn2_hbond_plan).
PLANS = ("classical", "gfn2-dynamics", "gfn2-hbond")
#: Molecule selections besides the element-balanced one and the bond supplement (molecules.select_motif_molecules).
MOTIFS = ("hbond",)
#: Elements GFN2-xTB is parametrised for (H..Rn).
XTB_MAX_Z = 86


@dataclass
class LabelConfig:
    elements: Sequence[str] = DEFAULT_ELEMENTS
    min_atoms: int = 4
    max_atoms: int = 40
    n_molecules: int | None = 3200
    per_element: int = 360
    heldout_fraction: float = 0.1
    states: Sequence[tuple[int, int]] = DEFAULT_STATES
    t_min: float = 300.0  # K
    t_max: float = 1200.0  # K
    md_steps: int = 300  # classical Langevin steps of 0.5 fs per thermal geometry
    n_conformers: int = 2
    compress_pair: tuple[float, float] = (0.65, 0.85)  # x sum of covalent radii
    compress_bond: tuple[float, float] = (0.7, 0.8)  # x bond length
    stretch_bond: tuple[float, float] = (1.2, 1.8)  # x bond length
    relax_steps: int = 3  # GFN2 steepest-descent steps on a charged/open-shell surface
    relax_step: float = 0.02  # Å per eV/Å
    relax_max_move: float = 0.12  # Å per atom and step
    max_force: float = 50.0  # eV/Å: frames with a larger force component are dropped ("force_cap")
    max_force_compressed: float = 100.0  # eV/Å, the cap for compress_pair / compress_bond frames
    seed: int = 0
    #: Label the bond supplement (molecules.select_bond_supplement) instead of the element-balanced selection.
    bond_supplement: bool = False
    #: Compact data file(s) whose held-out molecules may not serve as scaffolds of the bond supplement, nor be chosen
    #: by a motif selection (one path, or a tuple of paths).
    exclude_heldout_of: str | Sequence[str] | None = None
    #: A compact data file none of whose molecules (held-out or not) may be chosen by the element-balanced selection
    #: (new molecules for a line that already trains on that file).
    exclude_molecules_of: str | None = None
    #: The bond supplement's groups (SMILES with one [*] attachment point; None: molecules.BOND_GRAFTS).
    graft_groups: Sequence[str] | None = None
    #: Two-atom bond SMARTS (e.g. ``[#6]-[Br]``) whose bonds get ``target_frames`` extra stretched geometries per
    #: molecule ("stretch_target"; None: none). Lengths x bond length, one frame per equal-width stratum.
    target_bonds: Sequence[str] | None = None
    target_stretch: tuple[float, float] = (1.05, 1.65)  # x bond length
    target_frames: int = 4
    #: One of PLANS.
    plan: str = "classical"
    gfn2_relax_fmax: float = 0.05  # eV/Å, the gfn2-dynamics plan's BFGS target
    gfn2_relax_max_steps: int = 150
    gfn2_md_steps: int = 250  # GFN2-xTB Langevin steps after the minimum
    gfn2_md_timestep: float = 1.0  # fs
    gfn2_md_every: int = 50  # a frame every n-th step
    gfn2_t_min: float = 300.0  # K
    gfn2_t_max: float = 700.0  # K
    #: One of MOTIFS: label pool molecules that hold that motif (molecules.select_motif_molecules) instead of the
    #: element-balanced selection (None).
    motif: str | None = None
    #: gfn2-hbond plan: H...A distances (Å) of the hbond_push frames, and D...A distances (Å) of the compress_hbond
    #: frames, one frame per equal-width stratum (target_frames push frames, half as many squeeze frames).
    hbond_push: tuple[float, float] = (1.0, 1.7)
    hbond_squeeze: tuple[float, float] = (2.2, 2.5)
    calculator: str = "tblite"  # or "module:Class" (an ASE calculator)
    calculator_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse options that do not go together (the one place this is checked; the CLI shows the message)."""
        if self.exclude_molecules_of and self.bond_supplement:
            raise LabelConfigError(
                "--exclude-molecules-of applies to the element-balanced selection, not --bond-supplement"
            )
        if self.motif is not None and (self.bond_supplement or self.exclude_molecules_of):
            raise LabelConfigError("--motif is its own selection: not with --bond-supplement or --exclude-molecules-of")
        if self.n_conformers < 1:
            raise LabelConfigError(f"--n-conformers must be at least 1, got {self.n_conformers}")


class LabelConfigError(ValueError):
    """Labelling options that do not go together; the message names them by their command-line flags."""


class LabelError(RuntimeError):
    def __init__(self, cause: str, message: str) -> None:
        super().__init__(message)
        self.cause = cause


def parity_ok(numbers: np.ndarray, charge: int, multiplicity: int) -> bool:
    """True if ``charge`` (e) and ``multiplicity`` are possible for these atoms (the engine's electron-parity rule)."""
    return bool(electron_parity_ok(int(np.sum(numbers)), charge, multiplicity))


def tblite_calculator(numbers: np.ndarray, pos: np.ndarray, charge: int, mult: int):
    """A quiet tblite GFN2-xTB calculator of one structure (positions Å) in one (charge, multiplicity) state."""
    from tblite.interface import Calculator

    calc = Calculator("GFN2-xTB", numbers, pos / BOHR_TO_ANGSTROM, charge=float(charge), uhf=mult - 1)
    calc.set("verbosity", 0)
    return calc


def tblite_energy_forces(res) -> tuple[float, np.ndarray]:
    """(energy eV, forces eV/Å) of a tblite single-point result (Hartree, Hartree/Bohr)."""
    energy = float(res.get("energy")) * HARTREE_TO_EV
    forces = -np.asarray(res.get("gradient")) * (HARTREE_TO_EV / BOHR_TO_ANGSTROM)
    return energy, forces


def check_finite(energy: float, forces: np.ndarray) -> None:
    """Raise LabelError('non_finite') unless the energy and every force component are finite."""
    if not (np.isfinite(energy) and np.isfinite(forces).all()):
        raise LabelError("non_finite", "non-finite energy or forces")


def check_plan(cfg: LabelConfig) -> None:
    """Raise ValueError unless ``cfg.plan`` is one of PLANS and ``cfg.motif`` one of MOTIFS (or None)."""
    if cfg.plan not in PLANS:
        raise ValueError(f"unknown labelling plan {cfg.plan!r}; choose one of {', '.join(PLANS)}")
    if cfg.motif is not None and cfg.motif not in MOTIFS:
        raise ValueError(f"unknown motif {cfg.motif!r}; choose one of {', '.join(MOTIFS)}")


class Labeller:
    """Energy (eV) and forces (eV/Å) of one structure in one state; raises LabelError with a cause."""

    def __init__(self, cfg: LabelConfig) -> None:
        self.cfg = cfg
        self.seconds = 0.0  # time spent in the quantum-chemistry calls
        self.calls = 0

    def __call__(
        self, numbers: np.ndarray, pos: np.ndarray, charge: int, mult: int, max_force: float | None = None
    ) -> tuple[float, np.ndarray]:
        if not parity_ok(numbers, charge, mult):
            raise LabelError("parity", f"charge {charge} / multiplicity {mult} impossible")
        t0 = time.perf_counter()
        self.calls += 1
        try:
            energy, forces = self._compute(numbers, pos, charge, mult)
        except LabelError:
            raise
        except Exception as exc:  # noqa: BLE001 - SCF non-convergence and any calculator failure
            raise LabelError("scf_failure", f"{type(exc).__name__}: {exc}") from exc
        finally:
            self.seconds += time.perf_counter() - t0
        check_finite(energy, forces)
        if np.abs(forces).max() > (self.cfg.max_force if max_force is None else max_force):
            raise LabelError("force_cap", f"force component {np.abs(forces).max():.1f} eV/Å above the cap")
        return energy, forces

    def _compute(self, numbers: np.ndarray, pos: np.ndarray, charge: int, mult: int) -> tuple[float, np.ndarray]:
        if self.cfg.calculator == "tblite":
            return tblite_energy_forces(tblite_calculator(numbers, pos, charge, mult).singlepoint())
        from ase import Atoms

        from .label_xtbmd import make_calculator

        atoms = Atoms(numbers=numbers, positions=pos)
        atoms.calc = make_calculator(self.cfg, charge, mult)  # type: ignore[arg-type]
        return float(atoms.get_potential_energy()), np.array(atoms.get_forces())


@dataclass
class MoleculeFrames:
    """The labelled frames of one molecule (arrays, one row per frame) and its counters."""

    numbers: np.ndarray
    positions: list[np.ndarray] = field(default_factory=list)
    forces: list[np.ndarray] = field(default_factory=list)
    energy: list[float] = field(default_factory=list)
    charge: list[int] = field(default_factory=list)
    spin: list[int] = field(default_factory=list)
    geometry: list[int] = field(default_factory=list)
    sampler: list[int] = field(default_factory=list)
    param: list[float] = field(default_factory=list)  # K for thermal, ratio for distortions, step for relax
    stats: Counter = field(default_factory=Counter)
    n_geometries: int = 0

    def new_geometry(self) -> int:
        self.n_geometries += 1
        return self.n_geometries - 1


def other_state(states: Sequence[tuple[int, int]], rng: np.random.Generator) -> list[tuple[int, int]]:
    """One of the non-ground ``states`` (``states[1:]``) drawn with ``rng``, as a one-element list; [] (no draw)
    when there is only the ground state."""
    return [states[1 + int(rng.integers(len(states) - 1))]] if len(states) > 1 else []


def _label_states(
    out: MoleculeFrames,
    labeller: Labeller,
    pos: np.ndarray,
    states: Sequence[tuple[int, int]],
    sampler: str,
    param: float,
) -> dict[tuple[int, int], np.ndarray]:
    """Label ``pos`` in each state (same geometry id); returns the forces of the states that worked."""
    gid = out.new_geometry()
    done = {}
    cap = labeller.cfg.max_force_compressed if sampler.startswith("compress") else labeller.cfg.max_force
    for q, m in states:
        try:
            energy, forces = labeller(out.numbers, pos, q, m, max_force=cap)
        except LabelError as exc:
            out.stats[exc.cause] += 1
            continue
        out.positions.append(pos.astype(np.float32))
        out.forces.append(forces.astype(np.float32))
        out.energy.append(energy)
        out.charge.append(q)
        out.spin.append(m)
        out.geometry.append(gid)
        out.sampler.append(SAMPLERS.index(sampler))
        out.param.append(param)
        out.stats["frames"] += 1
        out.stats[f"frames_{sampler}"] += 1
        done[(q, m)] = forces
    return done


def _relax(out: MoleculeFrames, labeller: Labeller, pos: np.ndarray, state: tuple[int, int], forces, cfg) -> None:
    """``cfg.relax_steps`` steepest-descent steps on the GFN2 surface of ``state``; each step is a frame."""
    for step in range(1, cfg.relax_steps + 1):
        move = cfg.relax_step * forces
        norm = np.linalg.norm(move, axis=1, keepdims=True)
        move *= np.minimum(1.0, cfg.relax_max_move / np.maximum(norm, 1e-12))
        pos = pos + move
        got = _label_states(out, labeller, pos, [state], "relax", float(step))
        if state not in got:
            return
        forces = got[state]


def sample_molecule(index: int, molecule: Molecule, cfg: LabelConfig, labeller: Labeller) -> MoleculeFrames:
    """The per-molecule plan (docs/data.md): 15 GFN2 single points when nothing fails (classical plan)."""
    check_plan(cfg)
    from rdkit import Chem

    empty = MoleculeFrames(numbers=np.zeros(0, dtype=np.uint8))
    parsed = Chem.MolFromSmiles(molecule.smiles)
    if parsed is None:
        empty.stats["unparsable_smiles"] += 1
        return empty
    if cfg.calculator == "tblite" and any(not 1 <= a.GetAtomicNum() <= XTB_MAX_Z for a in parsed.GetAtoms()):
        empty.stats["element_not_in_xtb"] += 1
        return empty
    rng = np.random.default_rng([cfg.seed, index])
    try:
        mol, ff_name = embed(molecule.smiles, cfg.n_conformers, seed=cfg.seed * 1_000_003 + index)
    except SamplingError as exc:
        empty.stats[exc.cause] += 1
        return empty
    out = MoleculeFrames(numbers=np.array([a.GetAtomicNum() for a in mol.GetAtoms()]))
    out.stats[f"force_field_{ff_name}"] += 1
    try:
        if cfg.plan == "gfn2-dynamics":
            from .label_dynamics import gfn2_dynamics_plan

            gfn2_dynamics_plan(out, mol, cfg, labeller, rng)
        elif cfg.plan == "gfn2-hbond":
            from .label_dynamics import gfn2_hbond_plan

            gfn2_hbond_plan(out, mol, cfg, labeller, rng)
        else:
            _plan(out, mol, cfg, labeller, rng, np.random.default_rng([cfg.seed, index, 1]))
    except SamplingError as exc:
        out.stats[exc.cause] += 1
    return out


def _plan(
    out: MoleculeFrames,
    mol,
    cfg: LabelConfig,
    labeller: Labeller,
    rng: np.random.Generator,
    target_rng: np.random.Generator,
) -> None:
    """The frames of one molecule; the stretch_target frames come last and draw from ``target_rng`` alone, so the
    other frames are the same with or without them."""
    from .sampling import ClassicalSurface

    surface = ClassicalSurface(mol)
    conformers = [c.GetPositions() for c in mol.GetConformers()]
    states = list(cfg.states)
    ground, others = states[0], states[1:]
    temps = rng.uniform(cfg.t_min, cfg.t_max, size=3)
    thermal = [
        thermal_md(surface, conformers[k % len(conformers)], float(temps[k]), cfg.md_steps, rng) for k in range(3)
    ]

    def other() -> list[tuple[int, int]]:
        return other_state(states, rng)

    _label_states(out, labeller, thermal[0], states, "thermal", float(temps[0]))
    _label_states(out, labeller, thermal[1], [ground, *other()], "thermal", float(temps[1]))
    try:
        d = compress_pair(mol, thermal[0], rng, *cfg.compress_pair)
        _label_states(out, labeller, d.positions, [ground, *other()], "compress_pair", d.ratio)
    except SamplingError as exc:
        out.stats[exc.cause] += 1
    d = scale_bond(mol, thermal[0], rng, *cfg.compress_bond)
    _label_states(out, labeller, d.positions, [ground], "compress_bond", d.ratio)
    d = scale_bond(mol, thermal[1], rng, *cfg.stretch_bond)
    _label_states(out, labeller, d.positions, [ground, *other()], "stretch_bond", d.ratio)
    if others and cfg.relax_steps > 0:
        state = other()[0]
        got = _label_states(out, labeller, thermal[2], [state], "thermal", float(temps[2]))
        if state in got:
            _relax(out, labeller, thermal[2], state, got[state], cfg)
    if cfg.target_bonds:
        _stretch_targets(out, mol, cfg, labeller, thermal, target_rng)


def _stretch_targets(
    out: MoleculeFrames,
    mol,
    cfg: LabelConfig,
    labeller: Labeller,
    thermal: list[np.ndarray],
    rng: np.random.Generator,
) -> None:
    """``cfg.target_frames`` geometries, each a thermal geometry with one bond matching ``cfg.target_bonds`` (drawn
    at random) stretched to u x its length, u drawn in the k-th of ``target_frames`` equal strata of
    ``cfg.target_stretch``: the ground state, and on the second geometry also one other state."""
    bonds = matching_bonds(mol, cfg.target_bonds or ())
    if not bonds:
        out.stats["no_target_bond"] += 1
        return
    states = list(cfg.states)
    lo, hi = cfg.target_stretch
    edges = np.linspace(lo, hi, cfg.target_frames + 1)
    for k in range(cfg.target_frames):
        bond = bonds[int(rng.integers(len(bonds)))]
        d = scale_bond(mol, thermal[k % len(thermal)], rng, float(edges[k]), float(edges[k + 1]), bond=bond)
        extra = other_state(states, rng) if k == 1 else []
        _label_states(out, labeller, d.positions, [states[0], *extra], "stretch_target", d.ratio)


def _part_arrays(res: MoleculeFrames, seconds: float, xtb_seconds: float) -> dict[str, np.ndarray]:
    n = len(res.energy)
    nat = len(res.numbers)
    stats = dict(res.stats, seconds=seconds, xtb_seconds=xtb_seconds)
    return {
        "numbers": res.numbers.astype(np.uint8),
        "positions": np.stack(res.positions) if n else np.zeros((0, nat, 3), np.float32),
        "forces": np.stack(res.forces) if n else np.zeros((0, nat, 3), np.float32),
        "energy": np.array(res.energy, dtype=np.float64),
        "charge": np.array(res.charge, dtype=np.int8),
        "spin": np.array(res.spin, dtype=np.int8),
        "geometry": np.array(res.geometry, dtype=np.int32),
        "sampler": np.array(res.sampler, dtype=np.uint8),
        "param": np.array(res.param, dtype=np.float32),
        "stats": np.array(json.dumps(stats)),
    }


def _worker(task: tuple[int, Molecule, LabelConfig, str]) -> tuple[int, dict[str, Any]]:
    index, molecule, cfg, parts_dir = task
    t0 = time.perf_counter()
    labeller = Labeller(cfg)
    try:
        res = sample_molecule(index, molecule, cfg, labeller)
    except Exception as exc:  # noqa: BLE001 - anything unforeseen: count it, keep the run going
        log.warning("molecule %s (%s) failed: %s", molecule.mol_id, molecule.smiles, exc)
        res = MoleculeFrames(numbers=np.zeros(0, dtype=np.uint8))
        res.stats[f"unexpected_{type(exc).__name__}"] += 1
    arrays = _part_arrays(res, time.perf_counter() - t0, labeller.seconds)
    with atomic_write(Path(parts_dir) / f"{index:06d}.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return index, json.loads(str(arrays["stats"]))


#: LabelConfig fields added after the shipped set was built: left out of a manifest while at their defaults, so
#: parts folders made before they existed still resume.
_LATER_FIELDS = (
    "bond_supplement",
    "exclude_heldout_of",
    "graft_groups",
    "target_bonds",
    "target_stretch",
    "target_frames",
    "plan",
    "gfn2_relax_fmax",
    "gfn2_relax_max_steps",
    "gfn2_md_steps",
    "gfn2_md_timestep",
    "gfn2_md_every",
    "gfn2_t_min",
    "gfn2_t_max",
    "exclude_molecules_of",
    "motif",
    "hbond_push",
    "hbond_squeeze",
)


def _config_values(cfg: LabelConfig) -> dict[str, Any]:
    """The configuration as JSON-like values (tuples as lists)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}


def _manifest(cfg: LabelConfig, molecules: Sequence[Molecule]) -> dict[str, Any]:
    data = _config_values(cfg)
    defaults = _config_values(LabelConfig())
    for key in _LATER_FIELDS:
        if data[key] == defaults[key]:
            del data[key]
    data["molecules"] = [m.smiles for m in molecules]
    return data


def _check_manifest(parts_dir: Path, manifest: dict[str, Any]) -> None:
    """Parts of a different configuration or molecule list must not be mixed into this run."""
    path = parts_dir / "manifest.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old != json.loads(json.dumps(manifest)):
            raise ValueError(f"{parts_dir}: parts were made with another configuration; use a new output path")
        return
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(manifest))


def _smiles_by_side(paths: str | Sequence[str] | None) -> tuple[set[str], set[str]]:
    """Canonical SMILES of the molecules of compact data file(s) ``paths``: (held-out ones, the others); both
    empty without a path. Each file is read once."""
    held_out: set[str] = set()
    others: set[str] = set()
    if not paths:
        return held_out, others
    from .data import load_compact

    for path in [paths] if isinstance(paths, str) else paths:
        a = load_compact(path)
        for smi, held in zip(a["mol_smiles"], a["mol_heldout"], strict=True):
            (held_out if held else others).add(str(smi))
    return held_out, others


def _smiles_of(paths: str | Sequence[str] | None, heldout_only: bool) -> set[str]:
    """Canonical SMILES of the molecules of compact data file(s) ``paths`` (only their held-out ones if
    ``heldout_only``; none without a path)."""
    held_out, others = _smiles_by_side(paths)
    return held_out if heldout_only else held_out | others


def _selection(cfg: LabelConfig, sources: Sequence[str | os.PathLike] | None) -> Selection:
    """The molecules to label: the element-balanced selection, the bond supplement, or a motif selection."""
    if cfg.motif is not None:
        if cfg.n_molecules is None:
            raise ValueError("a motif selection needs --n-molecules")
        heldout, training = _smiles_by_side(cfg.exclude_heldout_of)
        return select_motif_molecules(
            cfg.n_molecules,
            sources,
            heldout,
            cfg.heldout_fraction,
            cfg.elements,
            cfg.min_atoms,
            cfg.max_atoms,
            cfg.seed,
            training_smiles=training - heldout,
        )
    if not cfg.bond_supplement:
        return select_molecules(
            sources,
            cfg.n_molecules,
            cfg.per_element,
            cfg.heldout_fraction,
            cfg.elements,
            cfg.min_atoms,
            cfg.max_atoms,
            cfg.seed,
            exclude_smiles=_smiles_of(cfg.exclude_molecules_of, heldout_only=False),
        )
    if cfg.n_molecules is None:
        raise ValueError("the bond supplement needs --n-molecules")
    return select_bond_supplement(
        cfg.n_molecules,
        sources,
        _smiles_of(cfg.exclude_heldout_of, heldout_only=True),
        cfg.heldout_fraction,
        cfg.elements,
        cfg.min_atoms,
        cfg.max_atoms,
        cfg.seed,
        groups=cfg.graft_groups,
    )


def run_labelling(
    output: str | os.PathLike,
    cfg: LabelConfig,
    sources: Sequence[str | os.PathLike] | None = None,
    workers: int = 1,
    progress: bool = True,
    limit: int | None = None,
    parts_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Select molecules, label them into ``<output>.parts/`` (resumable) and gather ``output`` (compact .npz).

    ``limit`` labels and gathers only the first ``limit`` selected molecules (quick runs, benchmarks, or a
    cut of a long run: the parts of the full selection are reused, the selection order is a seeded shuffle).
    Returns a summary with counters by cause; it is also written to ``<parts_dir>/summary.json`` (default parts_dir:
    ``<output>.parts``).
    """
    from tqdm import tqdm

    check_plan(cfg)
    os.environ["OMP_NUM_THREADS"] = "1"  # before any worker imports tblite
    output = Path(output)
    t0 = time.perf_counter()
    sel = _selection(cfg, sources)
    selection_seconds = time.perf_counter() - t0
    parts_dir = Path(parts_dir) if parts_dir else output.parent / (output.name + ".parts")
    parts_dir.mkdir(parents=True, exist_ok=True)
    _check_manifest(parts_dir, _manifest(cfg, sel.molecules))
    molecules = sel.molecules[:limit] if limit is not None else sel.molecules
    todo = [(i, m, cfg, str(parts_dir)) for i, m in enumerate(molecules) if not (parts_dir / f"{i:06d}.npz").exists()]
    log.info("%d molecules selected, %d to label", len(molecules), len(todo))
    bar = tqdm(total=len(todo), desc="label", unit="mol", disable=not progress)
    if workers <= 1:
        for _ in map(_worker, todo):
            bar.update()
    else:
        with spawn_pool(workers) as pool:
            for _ in pool.imap_unordered(_worker, todo, chunksize=1):
                bar.update()
    bar.close()
    summary = gather(parts_dir, molecules, sel.heldout[: len(molecules)], output, cfg)
    summary.update(
        selection_rejected=dict(sel.rejected),
        derived=dict(sel.derived),
        resumed=len(molecules) - len(todo),
        wall_seconds=time.perf_counter() - t0,
        selection_seconds=selection_seconds,
    )
    with atomic_write(parts_dir / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    return summary


def gather(
    parts_dir: Path, molecules: Sequence[Molecule], heldout: Sequence[bool], output: Path, cfg: LabelConfig
) -> dict[str, Any]:
    """Write the parts of ``molecules`` (in order) as one compact file; return counts and reject causes."""
    from .data import write_compact

    totals: Counter[str] = Counter()
    keep: list[int] = []
    parts: list[dict[str, np.ndarray]] = []
    for i, _ in enumerate(molecules):
        with np.load(parts_dir / f"{i:06d}.npz") as z:
            part = {k: z[k] for k in z.files}
        stats = json.loads(str(part["stats"]))
        totals.update({k: v for k, v in stats.items() if not isinstance(v, float)})
        totals["seconds"] += stats.get("seconds", 0.0)
        totals["xtb_seconds"] += stats.get("xtb_seconds", 0.0)
        if len(part["energy"]):
            keep.append(i)
            parts.append(part)
        else:
            totals["molecules_without_frames"] += 1
    meta = {"config": _manifest(cfg, [])}
    meta["config"].pop("molecules")
    meta["counters"] = dict(totals)
    write_compact(
        output,
        mol_ids=[molecules[i].mol_id for i in keep],
        mol_smiles=[molecules[i].smiles for i in keep],
        mol_sources=[molecules[i].source for i in keep],
        mol_heldout=[bool(heldout[i]) for i in keep],
        parts=parts,
        sampler_names=SAMPLERS,
        meta=meta,
    )
    summary: dict[str, Any] = dict(totals)
    summary.update(output=str(output), molecules=len(keep), frames=int(sum(len(p["energy"]) for p in parts)))
    return summary
