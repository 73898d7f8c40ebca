"""``TransIPForce``: a compiled TransIP model as an OpenMM Force (kJ/mol, nm).

Two backends compute the same energy and forces from the same model file:

* ``'torch'``: an ``openmmtorch.TorchForce`` holding a TorchScript module generated here
  (:mod:`transip_md.openmm.torch_module`): edges, unit conversion and forces all inside TorchScript,
  so the model stays on the device (GPU-resident); the pair list is a Verlet list with a skin.
  Needs the ``openmmtorch`` package built for the installed torch.
* ``'python'``: an ``openmm.PythonForce`` whose callback evaluates the model with
  :func:`transip_md.model.predict` (works with any torch; used when ``openmmtorch`` does not import).

``backend='auto'`` takes 'torch' when ``import openmmtorch`` works, otherwise 'python'.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import openmm
import openmm.app
import torch

from ..model.accelerate import torch_compiled
from ..model.compiled import CompiledModel, load_compiled
from ..model.engine import GlobalModelError, require_local
from ..model.evaluate import predict
from ..model.transip import TransIP
from ..units import ANGSTROM_TO_NM, EV_PER_A_TO_KJ_PER_MOL_NM, EV_TO_KJ_PER_MOL, NM_TO_ANGSTROM
from ..validation import COINCIDENT_DISTANCE_A, InputError, check_charge_spin, check_elements
from .torch_module import DEFAULT_SKIN_ANGSTROM, checked_skin

BACKENDS = ("auto", "torch", "python")
PRECISIONS = {None: None, "single": torch.float32, "double": torch.float64}


class SerializationError(RuntimeError):
    """A System holds a force that OpenMM's XmlSerializer cannot write without crashing."""


def openmmtorch_available() -> bool:
    """Whether ``import openmmtorch`` works with the installed torch (checked once)."""
    return _openmmtorch() is not None


@functools.lru_cache(maxsize=1)
def _openmmtorch():
    try:
        import openmmtorch
    except Exception:  # ImportError, or an OSError from a libtorch ABI mismatch
        return None
    return openmmtorch


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@functools.lru_cache(maxsize=16)
def _cached_model(path: str, device: str, dtype: torch.dtype | None, mtime: float) -> CompiledModel:
    model = load_compiled(path, device)
    if dtype is not None:
        model.module.to(dtype)
    return model


def _cache_key(
    path: str | os.PathLike, device: str | torch.device, dtype: torch.dtype | None
) -> tuple[str, str, torch.dtype | None, float]:
    """(absolute path, device, dtype, modification time): a changed file gets a new key and is reloaded."""
    path = os.path.abspath(os.fspath(path))
    mtime = os.path.getmtime(path) if os.path.exists(path) else 0.0
    return path, str(device), dtype, mtime


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """Load a compiled model once per (file, device, dtype) and reuse it (a changed file is reloaded)."""
    return _cached_model(*_cache_key(path, device, dtype))


@functools.lru_cache(maxsize=4)
def _cached_torch_compiled(path: str, device: str, dtype: torch.dtype | None, mtime: float) -> TransIP:
    return torch_compiled(_cached_model(path, device, dtype, mtime))


def load_torch_compiled(path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """The model of a file through ``torch.compile`` (:mod:`transip_md.model.accelerate`), once per process."""
    return _cached_torch_compiled(*_cache_key(path, device, dtype))


def topology_atomic_numbers(topology: openmm.app.Topology) -> list[int]:
    numbers = []
    for atom in topology.atoms():
        if atom.element is None:
            raise InputError(
                f"atom {atom.index} ({atom.name} in residue {atom.residue.name}) has no element in the Topology; "
                "pass atomic_numbers= explicitly"
            )
        numbers.append(int(atom.element.atomic_number))
    return numbers


def _box_nm(topology, system, periodic: bool | None = None) -> np.ndarray | None:
    """The periodic box (rows, nm) from the Topology, else from a System that uses PBC (or periodic=True)."""
    if topology is not None and topology.getPeriodicBoxVectors() is not None:
        vecs = topology.getPeriodicBoxVectors()
    elif system is not None and (periodic or system.usesPeriodicBoundaryConditions()):
        vecs = system.getDefaultPeriodicBoxVectors()
    else:
        return None
    return np.array([[v[k].value_in_unit(openmm.unit.nanometer) for k in range(3)] for v in vecs])


def perpendicular_widths(box: np.ndarray) -> np.ndarray:
    """Distances between opposite faces of the cell with rows a, b, c (same unit as box)."""
    a, b, c = np.asarray(box, dtype=np.float64)
    volume = abs(np.dot(a, np.cross(b, c)))
    return volume / np.array(
        [np.linalg.norm(np.cross(b, c)), np.linalg.norm(np.cross(c, a)), np.linalg.norm(np.cross(a, b))]
    )


class TransIPCompute:
    """The PythonForce callback: state -> (energy kJ/mol, forces kJ/mol/nm) for the force's particles.

    Picklable (XmlSerializer pickles the callback): the model file path and settings are stored, the
    model itself is loaded lazily, once per process, through :func:`load_model`.
    """

    def __init__(
        self,
        model_path: str,
        numbers: Sequence[int],
        charge: int,
        multiplicity: int,
        periodic: bool,
        device: str,
        precision: str | None,
        torch_compile: bool = False,
    ) -> None:
        self.torch_compile = bool(torch_compile)
        self.model_path = os.path.abspath(model_path)
        self.numbers = np.asarray(numbers, dtype=np.int64)
        self.charge = int(charge)
        self.multiplicity = int(multiplicity)
        self.periodic = bool(periodic)
        self.device = str(device)
        self.precision = precision

    @property
    def model(self) -> CompiledModel:
        return load_model(self.model_path, self.device, PRECISIONS[self.precision])

    @property
    def evaluator(self) -> CompiledModel | TransIP:
        """What ``predict`` runs: the TorchScript file, or its torch.compile twin with ``torch_compile``."""
        if self.torch_compile:
            return load_torch_compiled(self.model_path, self.device, PRECISIONS[self.precision])
        return self.model

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["numbers"] = self.numbers.tolist()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.numbers = np.asarray(self.numbers, dtype=np.int64)

    def evaluate(self, positions_nm: np.ndarray, box_nm: np.ndarray | None) -> tuple[float, np.ndarray]:
        """Energy (kJ/mol) and forces (kJ/mol/nm) for positions (n, 3) nm and box rows (3, 3) nm."""
        if self.periodic:
            cell = np.asarray(box_nm, dtype=np.float64) * NM_TO_ANGSTROM
            pbc = np.ones(3, dtype=bool)
        else:
            cell, pbc = None, None
        pred = predict(
            self.evaluator,
            self.numbers,
            np.asarray(positions_nm, dtype=np.float64) * NM_TO_ANGSTROM,
            cell,
            pbc,
            self.charge,
            self.multiplicity,
            device=self.device,
            min_distance_a=COINCIDENT_DISTANCE_A,
        )
        return pred.energy * EV_TO_KJ_PER_MOL, pred.forces * EV_PER_A_TO_KJ_PER_MOL_NM

    def __call__(self, state: openmm.State):
        pos = state.getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer)
        box = None
        if self.periodic:
            box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(openmm.unit.nanometer)
        return self.evaluate(np.asarray(pos), None if box is None else np.asarray(box))


@dataclass
class MLAtoms:
    """The ML atoms of a force: atomic numbers (in ``indices`` order), System indices (None: every particle)
    and the particle count of the System (None when neither a Topology nor a System was given)."""

    numbers: list[int]
    indices: list[int] | None
    n_particles: int | None


def _particle_count(topology: openmm.app.Topology | None, system: openmm.System | None) -> int | None:
    n_particles = topology.getNumAtoms() if topology is not None else None
    if system is not None:
        if n_particles is not None and system.getNumParticles() != n_particles:
            raise InputError(
                f"the System has {system.getNumParticles()} particles but the Topology {n_particles} atoms"
            )
        n_particles = system.getNumParticles()
    return n_particles


def _checked_indices(atoms: Sequence[int] | None, n_particles: int | None) -> list[int] | None:
    if atoms is None:
        return None
    indices = [int(i) for i in atoms]
    if not indices:
        raise InputError("atoms is empty: give the indices of at least one ML atom")
    if len(set(indices)) != len(indices):
        raise InputError("atoms contains repeated indices")
    bad = [i for i in indices if i < 0 or (n_particles is not None and i >= n_particles)]
    if bad:
        raise InputError(f"atom index {bad[0]} is outside the System (particles 0..{(n_particles or 0) - 1})")
    return indices


def resolve_atoms(
    atoms: Sequence[int] | None,
    topology: openmm.app.Topology | None,
    atomic_numbers: Sequence[int] | None,
    system: openmm.System | None,
) -> MLAtoms:
    """The ML atoms and their elements from ``atoms``/``topology``/``atomic_numbers``/``system`` (see
    :func:`create_transip_force`), with the consistency checks (InputError naming the problem)."""
    n_particles = _particle_count(topology, system)
    indices = _checked_indices(atoms, n_particles)
    if topology is not None:
        all_numbers = topology_atomic_numbers(topology)
        numbers = all_numbers if indices is None else [all_numbers[i] for i in indices]
        if atomic_numbers is not None and list(map(int, atomic_numbers)) != numbers:
            raise InputError("atomic_numbers disagrees with the elements of the Topology")
    elif atomic_numbers is not None:
        numbers = [int(z) for z in atomic_numbers]
        expected = len(indices) if indices is not None else n_particles
        if expected is not None and len(numbers) != expected:
            what = f"{len(indices)} ML atoms" if indices is not None else f"{n_particles} particles in the System"
            raise InputError(f"{len(numbers)} atomic numbers given for {what}")
        if n_particles is None and indices is None:
            n_particles = len(numbers)
    else:
        raise InputError(
            "TransIPForce needs the elements: pass topology= (OpenMM Topology) or atomic_numbers= "
            "(an OpenMM System's masses do not identify elements)"
        )
    return MLAtoms(numbers, indices, n_particles)


def resolve_periodicity(
    model: CompiledModel, periodic: bool | None, box: np.ndarray | None, subset: bool, backend: str
) -> bool:
    """Whether the force sees the box: ``periodic``, or (None) a box is known and the model has a cutoff.

    A global model on a whole periodic System is refused; on a subset (ML/MM) it treats the ML atoms as an
    isolated molecule. The torch backend needs every box width >= 2 x cutoff (minimum image)."""
    cutoff = model.cutoff
    if periodic is None:
        periodic = box is not None and cutoff is not None
        if box is not None and not subset:
            try:
                require_local(cutoff, "periodic", model.path)
            except GlobalModelError as exc:
                raise GlobalModelError(
                    f"{exc}, or apply it to a molecule inside the box with atoms=[...] (ML/MM)"
                ) from exc
    if periodic:
        try:
            require_local(cutoff, "periodic", model.path)
        except GlobalModelError as exc:
            raise GlobalModelError(f"{exc} (periodic=True)") from exc
    if periodic and backend == "torch" and box is not None:
        widths = perpendicular_widths(box)
        if widths.min() < 2 * cutoff * ANGSTROM_TO_NM:
            raise InputError(
                f"periodic box too small for the torch backend: smallest width {widths.min():.4f} nm < 2 x cutoff "
                f"({2 * cutoff * ANGSTROM_TO_NM:.4f} nm); use a larger box or backend='python' (several images)"
            )
    return bool(periodic)


def resolve_backend(backend: str, torch_compile: bool) -> str:
    """'torch' or 'python' from 'auto'/'torch'/'python'; errors for impossible combinations."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = "torch" if openmmtorch_available() and not torch_compile else "python"
    if torch_compile and backend != "python":
        raise ValueError(
            "torch_compile=True runs the model through torch.compile in the python backend; the torch backend "
            "(TorchForce) runs the TorchScript file: use backend='python' or torch_compile=False"
        )
    if backend == "torch" and not openmmtorch_available():
        raise ImportError(
            "backend='torch' needs openmm-torch built for this torch "
            f"({torch.__version__}): `import openmmtorch` failed. Install e.g. acellera-openmmtorch-cu12/-cu13 "
            "with a matching torch (or conda-forge openmm-torch), or use backend='python'"
        )
    return backend


def build_python_force(
    model_path: str,
    ml: MLAtoms,
    charge: int,
    multiplicity: int,
    periodic: bool,
    device: torch.device,
    precision: str | None,
    torch_compile: bool,
) -> openmm.Force:
    """The 'python' backend: an ``openmm.PythonForce`` calling :class:`TransIPCompute`."""
    compute = TransIPCompute(
        model_path, ml.numbers, charge, multiplicity, periodic, str(device), precision, torch_compile
    )
    force = openmm.PythonForce(compute)
    if ml.indices is not None:
        force.setParticles(ml.indices)
    force.setUsesPeriodicBoundaryConditions(periodic)
    return force


def build_torch_force(
    model: CompiledModel,
    ml: MLAtoms,
    charge: int,
    multiplicity: int,
    periodic: bool,
    precision: str | None,
    skin_angstrom: float,
    properties: dict[str, str] | None,
) -> openmm.Force:
    """The 'torch' backend: an ``openmmtorch.TorchForce`` holding :mod:`transip_md.openmm.torch_module`."""
    if ml.n_particles is None:
        raise InputError("backend='torch' with atoms=[...] needs topology= or system= to know the particle count")
    from .torch_module import build_torch_module

    dtype = PRECISIONS[precision] or model.dtype
    module = build_torch_module(
        model.module,
        ml.numbers,
        ml.n_particles,
        ml.indices,
        model.cutoff,
        periodic,
        charge,
        multiplicity,
        dtype,
        skin=skin_angstrom,
    )
    force = _openmmtorch().TorchForce(module)
    force.setOutputsForces(True)
    force.setUsesPeriodicBoundaryConditions(periodic)
    for key, value in (properties or {}).items():
        force.setProperty(key, str(value))
    return force


def create_transip_force(
    model_path: str | os.PathLike,
    atoms: Sequence[int] | None = None,
    charge: int = 0,
    multiplicity: int = 1,
    periodic: bool | None = None,
    device: str = "auto",
    precision: str | None = None,
    backend: str = "auto",
    *,
    topology: openmm.app.Topology | None = None,
    atomic_numbers: Sequence[int] | None = None,
    system: openmm.System | None = None,
    force_group: int | None = None,
    properties: dict[str, str] | None = None,
    skin_angstrom: float = DEFAULT_SKIN_ANGSTROM,
    torch_compile: bool = False,
) -> openmm.Force:
    """An ``openmm.Force`` adding the model's energy and forces for ``atoms`` of a System
    (``TransIPForce`` is the same function under its original name).

    Parameters
    ----------
    model_path: compiled model file (``transip-md export``); loaded once per process and reused.
    atoms: System indices of the ML atoms (None: every particle).
    charge, multiplicity: total charge (e) and spin multiplicity 2S+1 of the ML atoms (parity checked).
    periodic: whether the model sees the periodic box. None: periodic when the Topology has a box (or the
        System already uses PBC) and the model has a cutoff; a global (all-pairs) model applied to a subset
        of a periodic System (ML/MM) treats that subset as an isolated molecule (OpenMM never wraps the
        positions it hands to a non-periodic force, so keep the ML molecule whole in the initial coordinates).
    device: 'auto' (CUDA when torch sees a GPU), 'cpu', 'cuda', 'cuda:1', ...
    precision: None (the model file's dtype), 'single' or 'double' (the model is cast to it).
    backend: 'auto', 'torch' (openmmtorch.TorchForce) or 'python' (openmm.PythonForce).
    topology: gives the elements (and particle count and box); or pass ``atomic_numbers``.
    atomic_numbers: elements of the ML atoms (in ``atoms`` order), or of every particle when
        ``atoms`` is None; an OpenMM System's masses do not identify elements.
    system: the System the force will be added to (particle count and box checks); optional.
    force_group: OpenMM force group (0-31) of the returned force.
    properties: TorchForce properties (torch backend), passed through as strings. CUDA graphs are not
        expected to work with local models (data-dependent shapes); see docs/openmm.md.
    skin_angstrom: Verlet skin in Å of the torch backend's pair list (local models; ignored by the python
        backend); see :data:`transip_md.openmm.torch_module.DEFAULT_SKIN_ANGSTROM`. 0 searches every step.
    torch_compile: python backend only: run the model through ``torch.compile`` instead of the TorchScript
        file (same numbers to round-off; the first steps compile for tens of seconds; docs/model.md).

    Positions are checked at every evaluation (non-finite, absurd coordinates, coincident atoms;
    :mod:`transip_md.validation`), with the messages the ASE calculator gives. Atoms between
    COINCIDENT_DISTANCE_A (0.01 Å) and the ASE calculator's MIN_DISTANCE_A (0.1 Å) get the model's repulsive
    wall instead of an error, so that OpenMM's minimiser can back away from its trial steps (docs/openmm.md).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be None, 'single' or 'double', got {precision!r}")
    skin_angstrom = checked_skin(skin_angstrom, "skin_angstrom")
    backend = resolve_backend(backend, torch_compile)
    dev = resolve_device(device)
    model_path = os.fspath(model_path)
    model = load_model(model_path, dev, PRECISIONS[precision])
    ml = resolve_atoms(atoms, topology, atomic_numbers, system)
    check_elements(ml.numbers, model.elements)
    check_charge_spin(ml.numbers, charge, multiplicity)
    box = _box_nm(topology, system, periodic)
    periodic = resolve_periodicity(model, periodic, box, ml.indices is not None, backend)
    if backend == "python":
        force = build_python_force(model_path, ml, charge, multiplicity, periodic, dev, precision, torch_compile)
    else:
        force = build_torch_force(model, ml, charge, multiplicity, periodic, precision, skin_angstrom, properties)
    force.setName(f"TransIP ({backend})")
    if force_group is not None:
        if not 0 <= int(force_group) <= 31:
            raise ValueError(f"force_group must be in 0..31, got {force_group}")
        force.setForceGroup(int(force_group))
    return force


#: The original name of :func:`create_transip_force` (it reads like the Force class it returns); kept working.
TransIPForce = create_transip_force


def force_backend(force: openmm.Force) -> str | None:
    """'python', 'torch' or None, from the force's class or, for plugin forces that OpenMM's Python layer
    returns as a plain ``openmm.Force`` (a TorchForce read back from ``System.getForces()``), its name
    (create_transip_force names its forces 'TransIP (torch)' / 'TransIP (python)'; TorchForce's default is
    'TorchForce')."""
    cls = type(force).__name__
    if cls == "PythonForce":
        return "python"
    if cls == "TorchForce":
        return "torch"
    if type(force) is openmm.Force:
        name = force.getName()
        if "TorchForce" in name or name == "TransIP (torch)":
            return "torch"
    return None


def check_serializable(system: openmm.System) -> None:
    """Raise :class:`SerializationError` if ``system`` holds a TorchForce.

    ``openmm.XmlSerializer.serialize`` of a System with an openmm-torch TorchForce crashes the process
    (segmentation fault) with the PyPI openmm 8.6.1 + acellera-openmmtorch 1.10 build; a PythonForce
    (backend 'python') serializes: its callback is pickled and the model reloaded from its path.
    """
    for k, force in enumerate(system.getForces()):
        if force_backend(force) == "torch":
            raise SerializationError(
                f"force {k} ({force.getName()}) is an openmm-torch TorchForce (TransIPForce backend='torch'): "
                "openmm.XmlSerializer crashes on it in this build; rebuild the System with backend='python' "
                "to serialize it, or save the model file and construction arguments instead"
            )


def serialize_system(system: openmm.System) -> str:
    """``XmlSerializer.serialize(system)``, refusing (instead of crashing on) a System with a TorchForce."""
    check_serializable(system)
    return openmm.XmlSerializer.serialize(system)
