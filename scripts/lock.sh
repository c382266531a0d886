#!/usr/bin/env bash
# Refresh constraints.txt on purpose: install the project into a fresh venv with whatever versions
# the registry serves today (no constraints), run nothing else, and freeze that set.
# Then run `make test` on it before committing the new file (CI installs exactly this set).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LOCK_VENV:-build/lock-venv}
rm -rf "$VENV"
UNLOCKED=1 VENV="$VENV" bash scripts/bootstrap-venv.sh
{
  echo "# The exact versions CI passed with (pip constraints: scripts/bootstrap-venv.sh installs with -c this file)."
  echo "# Refresh on purpose with 'make lock' (scripts/lock.sh: a fresh venv without constraints, then pip freeze)."
  "$VENV/bin/python" -m pip freeze --all --exclude-editable | grep -v '^fastsnn-lava'
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "lock: wrote constraints.txt ($(grep -vc '^#' constraints.txt) packages); rm -rf .venv, then make test" >&2
