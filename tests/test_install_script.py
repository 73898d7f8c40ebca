"""scripts/install.sh and scripts/build-lammps-mliap.sh: the checks they make before touching anything.

Both scripts refuse to start, with a message that names what is missing, instead of failing midway
(a CI run once ran out of disk while installing the second torch)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fake_df(folder: Path, free_kib: int) -> dict[str, str]:
    """Environment whose `df` reports `free_kib` KiB available on every file system."""
    df = folder / "df"
    df.write_text(
        "#!/bin/sh\n"
        "echo 'Filesystem 1024-blocks Used Available Capacity Mounted on'\n"
        f"echo '/dev/fake 999999999 1 {free_kib} 1% /'\n"
    )
    df.chmod(df.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def test_install_refuses_to_start_without_disk(tmp_path: Path) -> None:
    venv_before = sorted(p.name for p in (ROOT / ".venv").iterdir()) if (ROOT / ".venv").exists() else []
    env = _fake_df(tmp_path, free_kib=2 * 1024 * 1024)  # 2 GB free: less than either install needs
    for minimal, need in (("0", 8), ("1", 3)):
        result = subprocess.run(
            ["bash", str(ROOT / "scripts" / "install.sh")],
            env={**env, "TRANSIP_MINIMAL": minimal, "PYTHON": sys.executable},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"about {need} GB of free disk is needed" in result.stderr
        assert "only 2 GB is free" in result.stderr
    venv_after = sorted(p.name for p in (ROOT / ".venv").iterdir()) if (ROOT / ".venv").exists() else []
    assert venv_after == venv_before


def test_mliap_build_needs_the_main_venv(tmp_path: Path) -> None:
    """The ML-IAP LAMMPS shares the main venv's torch, numpy and transip_md: without that venv the
    build stops before downloading or compiling anything, and says which command makes it."""
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-lammps-mliap.sh"), str(tmp_path / "prefix")],
        env={**os.environ, "TRANSIP_MAIN_VENV": str(tmp_path / "no-such-venv")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the main venv" in result.stderr and "no-such-venv" in result.stderr
    assert "TRANSIP_MINIMAL=1 bash scripts/install.sh" in result.stderr
    assert not (tmp_path / "prefix" / "venv").exists()


def test_mliap_venv_shares_the_main_venv_torch() -> None:
    """The built ML-IAP venv imports its own `lammps` (with the ML-IAP Python coupling) and the main
    venv's torch and transip_md (this checkout), not copies."""
    python = ROOT / "build" / "lammps-mliap" / "venv" / "bin" / "python"
    assert python.exists(), f"{python} is missing: run scripts/build-lammps-mliap.sh (install.sh calls it)"
    code = "import lammps, lammps.mliap, torch, transip_md\nfor m in (lammps, torch, transip_md): print(m.__file__)"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120, check=True)
    lammps_file, torch_file, transip_file = (Path(line).resolve() for line in out.stdout.split())
    assert lammps_file.is_relative_to(ROOT / "build" / "lammps-mliap" / "venv")
    import torch

    assert torch_file == Path(torch.__file__).resolve()
    assert transip_file == ROOT / "transip_md" / "__init__.py"
