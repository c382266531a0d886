#!/usr/bin/env bash
# Create .venv with a Python 3.10 (Lava imports only there) and install the project with its 'lava' extra,
# at the versions recorded in constraints.txt.
# Candidates, in order: $PYTHON, python3.10 on PATH, pyenv's 3.10, `uv python install 3.10`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

is310() { "$@" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; }

find_python() {
  if [ -n "${PYTHON:-}" ] && is310 "$PYTHON"; then echo "$PYTHON"; return; fi
  if is310 python3.10; then command -v python3.10; return; fi
  if command -v pyenv >/dev/null 2>&1; then
    for p in "$(pyenv root)"/versions/3.10*/bin/python3.10; do
      if [ -x "$p" ] && is310 "$p"; then echo "$p"; return; fi
    done
  fi
  for p in "$HOME"/.pyenv/versions/3.10*/bin/python3.10 /usr/bin/python3.10 /usr/local/bin/python3.10; do
    if [ -x "$p" ] && is310 "$p"; then echo "$p"; return; fi
  done
  if command -v uv >/dev/null 2>&1; then
    uv python install 3.10 >&2 && p=$(uv python find 3.10) && is310 "$p" && { echo "$p"; return; }
  fi
  return 1
}

if ! PY=$(find_python); then
  echo "bootstrap: no Python 3.10 found (Lava 0.10 imports only on 3.10): install one (pyenv install 3.10," \
       "or 'pip install uv && uv python install 3.10') or set PYTHON=/path/to/python3.10" >&2
  exit 2
fi
echo "bootstrap: using $PY" >&2
if ! is310 "$VENV/bin/python"; then
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi
# The versions CI passed with (constraints.txt), unless UNLOCKED=1 (scripts/lock.sh, refreshing that file).
lock=(-c constraints.txt)
[ "${UNLOCKED:-0}" = 1 ] && lock=()
"$VENV/bin/python" -m pip install -q --upgrade "${lock[@]}" pip
"$VENV/bin/python" -m pip install -q "${lock[@]}" -e '.[lava,test]'
touch "$VENV/.installed"
