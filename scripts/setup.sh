#!/usr/bin/env bash
# Idempotent setup of a fresh clone: Python venv with every dependency, and Azurite from npm.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# This machine's pip config names local mirrors that may be absent; those warnings are noise.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt \
  2> >(grep -v "^WARNING: Location 'file:" >&2)
npm ci --silent --no-audit --no-fund >/dev/null 2>&1 || npm install --silent --no-audit --no-fund
echo "setup done: .venv and node_modules/.bin/azurite are ready" >&2
