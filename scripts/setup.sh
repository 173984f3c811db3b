#!/usr/bin/env bash
# Installs everything streambot and its tests need on a fresh Debian/Ubuntu
# machine: system packages (when run as root or with sudo), a virtual
# environment in .venv, the CPU build of PyTorch, and the project itself.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(nginx libnginx-mod-rtmp ffmpeg fonts-dejavu-core libfribidi0 nodejs chromium wordnet-base espeak-ng)
missing=()
for d in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q "install ok installed" || missing+=("$d")
done
if ((${#missing[@]})); then
  echo "==> installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Some nodejs builds bring npm with them; Debian's own needs its npm package.
if ! command -v npm >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends npm
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $PY"
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# The CPU build first: an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]"
# The package's bytecode, written now: an editable install leaves it to the first run, and
# where Python may not write it (PYTHONDONTWRITEBYTECODE, a read-only checkout) every start
# would compile each module again, a few tenths of a second before the first frame.
.venv/bin/python -m compileall -q streambot >/dev/null
# The browser tests drive Debian's chromium with playwright-core (it downloads no browser).
if [ -f package-lock.json ] && command -v npm >/dev/null; then
  npm ci --no-audit --no-fund --loglevel=error
fi
echo "==> ready"
