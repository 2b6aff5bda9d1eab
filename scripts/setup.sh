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
# Each install is skipped when what it installed from is unchanged since it last succeeded (a stamp of the
# requirement files' or package-lock.json's hash): pip still spends ~15 s confirming a satisfied venv, and
# `npm ci` deletes node_modules and installs it all again. A clean clone has no stamps and installs both.
stamp() { cat "$@" | sha256sum | cut -d' ' -f1; }
# npm runs beside pip (mostly waiting on downloads and the disk); pip writes no bytecode for every module of
# every package (a third of its CPU): Python compiles what is imported, once, on first use.
npm_stamp=$(stamp package.json package-lock.json)
npm_pid=
if [ "$(cat node_modules/.setup-stamp 2>/dev/null)" != "$npm_stamp" ] || [ ! -x node_modules/.bin/azurite ]; then
  ( { npm ci --silent --no-audit --no-fund >/dev/null 2>&1 || npm install --silent --no-audit --no-fund; } &&
    echo "$npm_stamp" > node_modules/.setup-stamp ) &
  npm_pid=$!
fi
pip_stamp=$(stamp requirements.txt requirements-dev.txt)
if [ "$(cat .venv/.setup-stamp 2>/dev/null)" != "$pip_stamp" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-compile -r requirements-dev.txt \
    2> >(grep -v "^WARNING: Location 'file:" >&2)
  echo "$pip_stamp" > .venv/.setup-stamp
fi
if [ -n "$npm_pid" ]; then
  wait "$npm_pid" || { echo "npm could not install Azurite" >&2; exit 1; }
fi
echo "setup done: .venv and node_modules/.bin/azurite are ready" >&2
