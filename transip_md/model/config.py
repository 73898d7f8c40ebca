"""Hyper-parameters of the TransIP network (lengths in Å)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SUPPORTED_DTYPES = ("float32", "float64")


@dataclass
class TransIPConfig:
    """Architecture of one TransIP model.

    ``cutoff=None`` selects the global mode (all-pairs attention over a whole molecule, isolated
    molecules only); a float selects the strictly local mode with that cutoff in Å.
    """

    elements: list[int] = field(default_factory=lambda: [1, 6, 7, 8])
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    cutoff: float | None = None
    #: Knots of the cubic-spline radial attention bias on [0, rbf_max] (cost independent of this number).
    n_rbf: int = 64
    #: Largest pair distance the radial basis resolves, Å (default: 2 x cutoff, or 12 Å globally).
    rbf_max: float | None = None
    #: Rotary frequencies per axis; each head needs 6 x n_rope_freqs dimensions.
    n_rope_freqs: int = 2
    rope_min_wavelength: float = 1.5
    rope_max_wavelength: float = 24.0
    #: Values rotated by the rotary encoding too (relative geometry in the messages, not only the weights).
    #: Off by default: 200 training steps on the shipped data gave the same validation force MAE
    #: (551 vs 539 meV/Å, docs/model.md) at extra cost.
    value_rotary: bool = False
    mlp_ratio: int = 2
    #: Knots of a learned spline embedding of each token's distance to its centre (local mode: the centre atom;
    #: global: the centroid), added to the token features (0: off). Gives values radial information per token.
    n_token_radial: int = 16
    #: Radial splines (attention bias and token radial embedding) read the pair distance in units of the two
    #: atoms' covalent-radius sum, r x 1.52 Å / (R_a + R_b) (1.52 Å: the C-C sum, so a C-C pair reads r), instead
    #: of r: the same spline knot then sits at the same bond stretch for every element pair. Local mode only.
    covalent_scaled_radial: bool = False
    #: With covalent_scaled_radial: the per-element radii of that scaling are learned parameters (one per element,
    #: positive through an exponential), starting at ASE's covalent radii (or, from a plain checkpoint with
    #: ``--init-covalent``, at 0.76 Å for every element, which reads every pair at r: the checkpoint exactly).
    learned_radii: bool = False
    #: Share the total charge and spin over the atoms with learned local weights, w_i / sum_j w_j
    #: (model/spread.py), instead of evenly (1 / N). Local mode, charge/spin conditioning on.
    learned_charge_spread: bool = False
    envelope_power: int = 4
    use_charge_spin: bool = True
    #: ZBL-screened nuclear repulsion prior (model/priors.py), switched off at this many times the sum of the
    #: two atoms' covalent radii (0 disables it).
    repulsion_range: float = 1.0
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.dtype not in SUPPORTED_DTYPES:
            raise ValueError(f"dtype must be one of {SUPPORTED_DTYPES}, got {self.dtype!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if 6 * self.n_rope_freqs > self.d_model // self.n_heads:
            raise ValueError(
                f"head dimension {self.d_model // self.n_heads} is too small for "
                f"{self.n_rope_freqs} rotary frequencies per axis (needs {6 * self.n_rope_freqs})"
            )
        if self.n_token_radial and self.n_token_radial < 4:
            raise ValueError(f"n_token_radial must be 0 (off) or >= 4 spline knots, got {self.n_token_radial}")
        if self.covalent_scaled_radial and self.cutoff is None:
            raise ValueError("covalent_scaled_radial needs a local model (a finite cutoff)")
        if self.learned_radii and not self.covalent_scaled_radial:
            raise ValueError("learned_radii needs covalent_scaled_radial (the radii it learns are that scaling's)")
        if self.learned_charge_spread and (self.cutoff is None or not self.use_charge_spin):
            raise ValueError("learned_charge_spread needs a local model (a finite cutoff) and use_charge_spin")
        if self.repulsion_range < 0:
            raise ValueError(f"repulsion_range must be >= 0 (x covalent-radius sum), got {self.repulsion_range}")
        if self.cutoff is not None and self.repulsion_reach > self.cutoff:
            raise ValueError(
                f"repulsion_range {self.repulsion_range} reaches {self.repulsion_reach:.2f} Å, beyond the cutoff "
                f"{self.cutoff} Å, for the largest pair of these elements"
            )
        if self.cutoff is not None and self.cutoff <= 0:
            raise ValueError(f"cutoff must be positive (Å) or None, got {self.cutoff}")
        if len(set(self.elements)) != len(self.elements) or not all(0 < z < 119 for z in self.elements):
            raise ValueError(f"elements must be distinct atomic numbers 1..118, got {self.elements}")
        self.elements = [int(z) for z in self.elements]

    @property
    def repulsion_reach(self) -> float:
        """Largest distance (Å) at which the nuclear repulsion prior is non-zero for these elements."""
        from ase.data import covalent_radii

        return 2.0 * self.repulsion_range * max(float(covalent_radii[z]) for z in self.elements)

    @property
    def radial_max(self) -> float:
        if self.rbf_max is not None:
            return float(self.rbf_max)
        return 2.0 * self.cutoff if self.cutoff is not None else 12.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TransIPConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TransIP config keys: {sorted(unknown)}")
        return cls(**data)
