"""scripts/install.sh and scripts/build-lammps-mliap.sh: the checks they make before touching anything.

Both scripts refuse to start, with a message that names what is missing, instead of failing midway
(a CI run once ran out of disk while installing the second torch)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fake_df(folder: Path, free_kib: int) -> dict[str, str]:
    """Environment whose `df` reports `free_kib` KiB available on every file system."""
    folder.mkdir(parents=True, exist_ok=True)
    df = folder / "df"
    df.write_text(
        "#!/bin/sh\n"
        "echo 'Filesystem 1024-blocks Used Available Capacity Mounted on'\n"
        f"echo '/dev/fake 999999999 1 {free_kib} 1% /'\n"
    )
    df.chmod(df.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def _checkout_copy(folder: Path) -> Path:
    """A folder with only scripts/install.sh in it: install.sh works on the folder above its own."""
    (folder / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "install.sh", folder / "scripts" / "install.sh")
    return folder / "scripts" / "install.sh"


BUILD_STEPS = ("build-lammps-plugin.sh", "build-lammps-mliap.sh", "setup-openmmtorch-venv.sh")


def _stub_build_steps(checkout: Path, log: Path) -> None:
    """Build scripts that only record that they ran, without the executable bit (install.sh runs them with bash)."""
    for name in BUILD_STEPS:
        (checkout / "scripts" / name).write_text(f'echo "{name}" >> "{log}"\n')


def _executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_install_refuses_to_start_without_disk(tmp_path: Path) -> None:
    env = _fake_df(tmp_path / "bin", free_kib=2 * 1024 * 1024)  # 2 GB free
    for minimal, need in (("0", 8), ("1", 3)):
        checkout = tmp_path / f"checkout-{minimal}"
        script = _checkout_copy(checkout)
        result = subprocess.run(
            ["bash", str(script)],
            env={**env, "TRANSIP_MINIMAL": minimal},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"about {need} GB of free disk is needed" in result.stderr
        assert "only 2 GB is free" in result.stderr
        assert sorted(p.name for p in checkout.iterdir()) == ["scripts"]  # nothing was installed


def test_install_rerun_counts_only_what_is_missing(tmp_path: Path) -> None:
    """Over an existing install (here: stub venvs whose pip only records its arguments), 2 GB free is
    enough, and the script goes on to its pip steps."""
    env = _fake_df(tmp_path / "bin", free_kib=2 * 1024 * 1024)
    checkout = tmp_path / "checkout"
    script = _checkout_copy(checkout)
    _executable(checkout / ".venv" / "bin" / "python", "#!/bin/sh\nexit 0\n")
    _executable(checkout / ".venv" / "bin" / "pip", f'#!/bin/sh\necho "$*" >> "{tmp_path}/pip.log"\n')
    _executable(checkout / "build" / "openmmtorch-venv" / "bin" / "python", "#!/bin/sh\nexit 0\n")
    _stub_build_steps(checkout, tmp_path / "steps.log")
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = (tmp_path / "pip.log").read_text().splitlines()
    assert calls == ["install -q --upgrade pip", "install -q torch==2.13.0", "install -q -e .[all]"]
    # without the openmm-torch venv, the same 2 GB is refused again (it needs about 5 GB)
    shutil.rmtree(checkout / "build")
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "about 5 GB of free disk is needed" in result.stderr


def test_install_runs_every_build_step_and_refuses_a_missing_one(tmp_path: Path) -> None:
    """Build scripts without the executable bit still run (with bash), in order; a missing one stops the
    install with a message naming it instead of being skipped."""
    env = _fake_df(tmp_path / "bin", free_kib=2 * 1024 * 1024)
    checkout = tmp_path / "checkout"
    script = _checkout_copy(checkout)
    _executable(checkout / ".venv" / "bin" / "python", "#!/bin/sh\nexit 0\n")
    _executable(checkout / ".venv" / "bin" / "pip", "#!/bin/sh\nexit 0\n")
    _executable(checkout / "build" / "openmmtorch-venv" / "bin" / "python", "#!/bin/sh\nexit 0\n")
    log = tmp_path / "steps.log"
    _stub_build_steps(checkout, log)
    assert not any(os.access(checkout / "scripts" / name, os.X_OK) for name in BUILD_STEPS)
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert log.read_text().splitlines() == list(BUILD_STEPS)
    log.unlink()
    (checkout / "scripts" / "build-lammps-mliap.sh").unlink()
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "scripts/build-lammps-mliap.sh is missing" in result.stderr
    assert log.read_text().splitlines() == ["build-lammps-plugin.sh"]


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
