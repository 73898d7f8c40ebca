"""transip-md: TransIP interatomic potentials from training to production MD."""

__version__ = "0.1.0"
