"""Shared fixtures: small random-weight models written as compiled model files."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from transip_md.model import TransIPConfig, export, random_model

#: Ethanol (atomic numbers, positions in Å), shared by the engine tests.
ETHANOL_Z = [6, 6, 8, 1, 1, 1, 1, 1, 1]
ETHANOL_A = np.array(
    [
        [-0.0011, -0.0140, 0.0000],
        [1.5120, -0.0010, 0.0000],
        [1.9550, 1.3470, 0.0000],
        [-0.3910, 1.0070, 0.0000],
        [-0.3830, -0.5280, 0.8850],
        [-0.3830, -0.5280, -0.8850],
        [1.8850, -0.5190, 0.8870],
        [1.8850, -0.5190, -0.8870],
        [2.9140, 1.3210, 0.0000],
    ]
)

#: CH2Br2 (atomic numbers, positions in Å): a small molecule whose first OpenMM minimiser step carries the two H
#: through each other (docs/openmm.md); shared by the minimiser, md CLI and pair-contact tests.
CH2BR2_Z = [6, 35, 35, 1, 1]
CH2BR2_A = np.array([[0.0, 0, 0], [1.94, 0, 0], [-0.65, 1.83, 0], [-0.4, -0.5, 0.9], [-0.4, -0.5, -0.9]])


def closest_distance(positions: np.ndarray) -> float:
    """The smallest distance between two of ``positions`` (same unit)."""
    positions = np.asarray(positions, dtype=float)
    d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    return float(d[np.triu_indices(len(positions), 1)].min())


def make_model(cutoff: float | None, dtype: str = "float64", seed: int = 0, scale: float = 5.0, **kw):
    """A random TransIP with a visible energy scale (eV) so forces are O(0.1-1) eV/Å."""
    cfg = TransIPConfig(elements=[1, 6, 7, 8], cutoff=cutoff, dtype=dtype, d_model=32, n_heads=2, **kw)
    model = random_model(cfg, seed=seed, reference_energies={1: -13.6, 6: -1029.0, 7: -1484.0, 8: -2041.0})
    model.energy_scale.fill_(scale)
    return model.eval()


@pytest.fixture(scope="session")
def plugin():
    """Path of the built pair_style transip plugin; a clear failure (not a skip) when it is missing."""
    from transip_md.lammps.plugin import PluginNotBuiltError, plugin_path

    try:
        return plugin_path()
    except PluginNotBuiltError as exc:
        pytest.fail(f"{exc} (scripts/install.sh builds it)")


@pytest.fixture(scope="session")
def global_model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "global.pt"
    export(make_model(None), path, {"purpose": "tests"})
    return path


@pytest.fixture(scope="session")
def local_model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "local.pt"
    export(make_model(4.0), path, {"purpose": "tests"})
    return path


def water_box(n: int = 2, spacing: float = 3.1, seed: int = 1) -> Atoms:
    """A periodic box of n^3 rattled water molecules (Å)."""
    rng = np.random.default_rng(seed)
    box = Atoms(cell=[n * spacing] * 3, pbc=True)
    w = molecule("H2O")
    for i in range(n):
        for j in range(n):
            for k in range(n):
                m = w.copy()
                m.rotate(rng.uniform(0, 360), rng.normal(size=3))
                m.translate(np.array([i, j, k]) * spacing + rng.uniform(0, 0.3, 3))
                box += m
    box.wrap()
    return box


def ethanol() -> Atoms:
    a = molecule("CH3CH2OH")
    a.rattle(0.05, seed=3)
    return a


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Two shared cores: one torch thread per test avoids oversubscription (and is faster at these sizes)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def load_bench():
    """Import a script of bench/ by name (``load_bench("equivariance")``) as a module, for tests of its logic."""

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module

    return load
