"""The GFN2-xTB dynamics plan of ``transip-md label --plan gfn2-dynamics`` (docs/data.md).

The classical plan (:mod:`transip_md.train.label`) takes every neutral geometry from MMFF94/UFF dynamics, so no
neutral frame is a minimum of the reference surface and the reference's own thermal motion is never seen. This plan
does it on the reference surface itself, per molecule:

1. the first MMFF94/UFF conformer relaxed with ASE's BFGS on the ground state's GFN2-xTB surface (to
   ``gfn2_relax_fmax`` eV/Å, at most ``gfn2_relax_max_steps`` steps): the minimum, labelled in every state
   (sampler ``gfn2_min``; param: the largest remaining force, eV/Å);
2. Langevin NVT on the same surface from that minimum at a temperature drawn from ``gfn2_t_min``-``gfn2_t_max`` K
   (``gfn2_md_steps`` steps of ``gfn2_md_timestep`` fs, friction 0.01/fs); every ``gfn2_md_every``-th step is a frame
   in the ground state and one other state drawn at random (sampler ``gfn2_md``; param: the temperature, K).

The relaxation and the dynamics reuse one tblite calculator and its last wavefunction (with ``calculator='tblite'``);
the frames themselves are fresh single points through :class:`transip_md.train.label.Labeller`, like every other
frame, so they carry the same checks (parity, SCF failure, non-finite values, force cap).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ..units import BOHR_TO_ANGSTROM
from .label import LabelError, check_finite, tblite_calculator, tblite_energy_forces

if TYPE_CHECKING:
    from .label import LabelConfig, Labeller, MoleculeFrames

#: Langevin friction of the dynamics, 1/fs (a 100 fs memory: the minimum's start heats up within the run).
FRICTION_PER_FS = 0.01


def reference_surface(
    labeller: Labeller, numbers: np.ndarray, charge: int, mult: int
) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """A function positions (Å) -> (energy eV, forces eV/Å) on one state's reference surface.

    With tblite it keeps one calculator and restarts each SCF from the previous wavefunction (the steps of a
    relaxation or of MD are small); other calculators go through the labeller. Errors raise LabelError.
    """
    if labeller.cfg.calculator != "tblite":
        return lambda pos: labeller(numbers, pos, charge, mult)
    state: dict = {}

    def compute(pos: np.ndarray) -> tuple[float, np.ndarray]:
        t0 = time.perf_counter()
        try:
            if "calc" not in state:
                state["calc"] = tblite_calculator(numbers, pos, charge, mult)
                res = state["calc"].singlepoint()
            else:
                state["calc"].update(positions=pos / BOHR_TO_ANGSTROM)
                res = state["calc"].singlepoint(state["res"])
        except Exception as exc:  # noqa: BLE001 - SCF non-convergence and any calculator failure
            raise LabelError("scf_failure", f"{type(exc).__name__}: {exc}") from exc
        finally:
            labeller.seconds += time.perf_counter() - t0
            labeller.calls += 1
        state["res"] = res
        energy, forces = tblite_energy_forces(res)
        check_finite(energy, forces)
        return energy, forces

    return compute


def _ase_calculator(surface: Callable[[np.ndarray], tuple[float, np.ndarray]]):
    """An ASE calculator (eV, eV/Å) around ``surface``."""
    from ase.calculators.calculator import Calculator, all_changes

    class _Surface(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
            super().calculate(atoms, properties, system_changes)
            energy, forces = surface(self.atoms.get_positions())
            self.results = {"energy": energy, "forces": forces}

    return _Surface()


def langevin_holding_centre_of_mass(
    atoms, timestep_fs: float, temperature_K: float, friction_per_fs: float, rng: np.random.Generator
):
    """ASE Langevin NVT for ``atoms`` whose momenta are already drawn: the centre-of-mass motion is removed and the
    centre of mass held by ASE's ``FixCom`` constraint (``fixcm=False``, ASE's replacement for Langevin's deprecated
    ``fixcm=True``). Time step in fs, temperature in K, friction per fs. Returns the dynamics object."""
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary

    Stationary(atoms)
    atoms.set_constraint(FixCom())
    return Langevin(
        atoms,
        timestep=timestep_fs * units.fs,
        temperature_K=temperature_K,
        friction=friction_per_fs / units.fs,
        fixcm=False,
        rng=rng,
    )


def gfn2_dynamics_plan(
    out: MoleculeFrames,
    mol,
    cfg: LabelConfig,
    labeller: Labeller,
    rng: np.random.Generator,
    start: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Append the ``gfn2_min`` and ``gfn2_md`` frames of one molecule (rdkit ``mol`` with conformers) to ``out``,
    relaxing from ``start`` (Å; default: the first conformer). Returns the geometries it visited (Å): the minimum,
    then each dynamics frame (empty when the relaxation failed)."""
    from ase import Atoms
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.optimize import BFGS

    from .label import _label_states, other_state

    states = list(cfg.states)
    ground = states[0]
    if start is None:
        start = mol.GetConformer(mol.GetConformers()[0].GetId()).GetPositions()
    atoms = Atoms(numbers=out.numbers, positions=start)
    atoms.calc = _ase_calculator(reference_surface(labeller, out.numbers, *ground))
    try:
        opt = BFGS(atoms, logfile=None, maxstep=0.1)
        converged = opt.run(fmax=cfg.gfn2_relax_fmax, steps=cfg.gfn2_relax_max_steps)
        fmax = float(np.linalg.norm(atoms.get_forces(), axis=1).max())
    except LabelError as exc:
        out.stats[exc.cause] += 1
        out.stats["gfn2_relax_failed"] += 1
        return []
    out.stats["gfn2_relax_converged" if converged else "gfn2_relax_unconverged"] += 1
    out.stats["gfn2_relax_steps"] += int(opt.nsteps)
    minimum = atoms.get_positions()
    _label_states(out, labeller, minimum, states, "gfn2_min", fmax)
    visited = [minimum]

    temperature = float(rng.uniform(cfg.gfn2_t_min, cfg.gfn2_t_max))
    thermalize_momenta(atoms, temperature, rng=rng)
    dyn = langevin_holding_centre_of_mass(atoms, cfg.gfn2_md_timestep, temperature, FRICTION_PER_FS, rng)
    for _ in range(cfg.gfn2_md_steps // cfg.gfn2_md_every):
        try:
            dyn.run(cfg.gfn2_md_every)
        except LabelError as exc:
            out.stats[exc.cause] += 1
            out.stats["gfn2_md_failed"] += 1
            return visited
        extra = other_state(states, rng)
        visited.append(atoms.get_positions())
        _label_states(out, labeller, visited[-1], [ground, *extra], "gfn2_md", temperature)
    return visited


#: An H further than this (Å) from its acceptor in a visited geometry is not in a hydrogen bond there: no push.
HBOND_MAX_A = 2.6


def gfn2_hbond_plan(out: MoleculeFrames, mol, cfg: LabelConfig, labeller: Labeller, rng: np.random.Generator) -> None:
    """The ``gfn2-hbond`` plan of one molecule (docs/data.md, "The hydrogen-bond supplement"):

    1. one intramolecular hydrogen-bond motif (H, donor, acceptor; :func:`transip_md.train.sampling.hbond_triples`)
       drawn at random, and the lowest MMFF94/UFF conformer with that H 1.7-2.1 Å from the acceptor;
    2. the :func:`gfn2_dynamics_plan` frames from that conformer (its GFN2-xTB minimum in every state, then
       Langevin frames);
    3. ``cfg.target_frames`` ``hbond_push`` geometries: a visited geometry whose H...A is under 2.6 Å, the H moved
       straight towards the acceptor to a distance in the k-th equal stratum of ``cfg.hbond_push`` (the start of a
       proton transfer; param: the H...A distance, Å), in the ground state, on the second also one other state;
    4. ``cfg.target_frames // 2`` ``compress_hbond`` geometries: donor (with its H) and acceptor brought together
       to a distance in the k-th stratum of ``cfg.hbond_squeeze`` (param: the D...A distance, Å), ground state.

    Where the hydrogen bond opened in every visited geometry (counted as ``hbond_open``), steps 3-4 start from the
    classical conformer of step 1. A molecule without the motif adds nothing (``no_hbond_motif``).
    """
    from .label import _label_states, other_state
    from .sampling import hbond_triples, hbonded_conformer, push_hydrogen, squeeze_hbond

    triples = hbond_triples(mol)
    if not triples:
        out.stats["no_hbond_motif"] += 1
        return
    h, d, a = triples[int(rng.integers(len(triples)))]
    start, _ = hbonded_conformer(mol, h, a)
    visited = gfn2_dynamics_plan(out, mol, cfg, labeller, rng, start=start)
    # the classical conformer itself when the reference surface opened the bond in every visited geometry
    bases = [p for p in visited if np.linalg.norm(p[h] - p[a]) < HBOND_MAX_A] or [start]
    if bases[0] is start:
        out.stats["hbond_open"] += 1
    states = list(cfg.states)
    lo, hi = cfg.hbond_push
    edges = np.linspace(lo, hi, cfg.target_frames + 1)
    for k in range(cfg.target_frames):
        base = bases[k % len(bases)]
        target = float(rng.uniform(edges[k], edges[k + 1]))
        if np.linalg.norm(base[h] - base[a]) <= target:
            out.stats["hbond_already_short"] += 1
            continue
        extra = other_state(states, rng) if k == 1 else []
        push = push_hydrogen(base, h, a, target)
        _label_states(out, labeller, push.positions, [states[0], *extra], "hbond_push", target)
    n_squeeze = cfg.target_frames // 2
    lo, hi = cfg.hbond_squeeze
    edges = np.linspace(lo, hi, n_squeeze + 1)
    for k in range(n_squeeze):
        base = bases[k % len(bases)]
        target = float(rng.uniform(edges[k], edges[k + 1]))
        if np.linalg.norm(base[d] - base[a]) <= target:
            out.stats["hbond_already_short"] += 1
            continue
        squeeze = squeeze_hbond(mol, base, d, a, target)
        _label_states(out, labeller, squeeze.positions, [states[0]], "compress_hbond", target)
