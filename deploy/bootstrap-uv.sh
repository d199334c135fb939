#!/usr/bin/env bash
# Prints the path of a `uv` executable. If none is installed, installs uv from PyPI into
# .eldercare/bootstrap (a small venv of its own), or else with `pip install --user`.
# Progress goes to stderr; stdout carries only the path (the Makefile reads it).
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v uv >/dev/null 2>&1; then
  command -v uv
  exit 0
fi
for candidate in .eldercare/bootstrap/bin/uv "$HOME/.local/bin/uv"; do
  if [ -x "$candidate" ]; then
    echo "$candidate"
    exit 0
  fi
done

python="$(command -v python3.11 || command -v python3 || true)"
if [ -z "$python" ]; then
  echo "bootstrap-uv: Python 3.11 or newer is needed (no python3 on PATH)." >&2
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "bootstrap-uv: Python 3.11 or newer is needed; $python is $("$python" --version 2>&1)." >&2
  exit 1
fi

echo "bootstrap-uv: uv not found; installing it from PyPI into .eldercare/bootstrap" >&2
mkdir -p .eldercare
if "$python" -m venv .eldercare/bootstrap >/dev/null 2>&1 \
  && .eldercare/bootstrap/bin/python -m pip install --quiet --disable-pip-version-check uv >&2; then
  echo .eldercare/bootstrap/bin/uv
  exit 0
fi
rm -rf .eldercare/bootstrap
echo "bootstrap-uv: could not make a venv (Debian/Ubuntu: package python3-venv); trying pip --user" >&2
if "$python" -m pip install --quiet --user uv >&2; then
  echo "$("$python" -m site --user-base)/bin/uv"
  exit 0
fi
echo "bootstrap-uv: could not install uv. Install it yourself (pip install uv, or apt-get install python3-venv) and re-run." >&2
exit 1
