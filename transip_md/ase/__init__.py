"""ASE bridge: :class:`TransIPCalculator`."""

from .calculator import TransIPCalculator

__all__ = ["TransIPCalculator"]
