"""Spawned worker pools that do not outlive a killed parent.

A ``multiprocessing`` pool's ``__exit__`` terminates its workers, but SIGTERM (plain ``kill``) ends a Python
process at once without running it, and the spawned workers then run on, each holding a core. Every pool in
transip-md (labelling, MD benches, the MACE comparison) comes from :func:`spawn_pool`, which turns SIGTERM into
``SystemExit`` while the pool is open so the ``with`` block unwinds and the workers are terminated.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.pool import Pool


def _exit_on_sigterm(signum: int, frame: object) -> None:
    sys.exit(128 + signum)


@contextmanager
def spawn_pool(processes: int) -> Iterator[Pool]:
    """A ``spawn`` pool of ``processes`` workers; SIGTERM to this process exits with status 143 and terminates them.

    The handler is installed only from the main thread (Python allows no other) and the previous handler comes back
    when the block ends (the default action where the previous one was set outside Python and cannot be restored).
    """
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if in_main_thread else None
    try:
        with mp.get_context("spawn").Pool(processes) as pool:
            yield pool
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
