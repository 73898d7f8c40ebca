"""bench/md_stability.py names the atoms of a break: element and 0-based index, so a report says which bond changed."""

from __future__ import annotations

import numpy as np


def test_a_changed_bond_is_named_by_its_atoms(load_bench):
    bench = load_bench("md_stability")
    numbers = np.array([8, 1, 1, 8])  # O0-H1 breaks; a free H2 bonds to O3
    start = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [7.0, 0.0, 0.0], [4.0, 0.0, 0.0]])  # Å
    before, _ = bench.contacts(numbers, start)
    moved = start.copy()
    moved[1] = [1.5, 0.0, 0.0]  # O0-H1 stretched past 1.2x the covalent sum
    moved[2] = [3.03, 0.0, 0.0]  # H2 now 0.97 Å from O3
    after, _ = bench.contacts(numbers, moved)
    assert bench.describe_change(numbers, moved, before, after) == "lost O0-H1 1.50 Å; new H2-O3 0.97 Å"
