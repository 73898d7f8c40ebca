"""Atomic file writes: write to a temporary file in the target's folder, then ``os.replace``.

A reader never sees a torn file, and a kill at any point leaves either the old file or the new one
(plus, at worst, a ``*.tmp`` file that the next write of the same target removes).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def stale_temporaries(path: Path) -> list[Path]:
    """Leftover temporaries of ``path`` from writes that were killed (``<name>.*.tmp``)."""
    return sorted(path.parent.glob(path.name + ".*.tmp"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left as it was. Temporaries left by
    an earlier killed write of the same target are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in stale_temporaries(path):
        old.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; a written file gets the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
