#!/usr/bin/env bash
# The project's Python tools (moto server, PyYAML for the API emulator, lupa's
# Lua 5.1 for the Argo CD health check) in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/moto_server ] || ! .venv/bin/python -c 'import yaml, moto, lupa.lua51' 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi
echo "python tools ready: $(.venv/bin/python -c 'import moto; print("moto", moto.__version__)')"
