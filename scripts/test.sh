#!/usr/bin/env bash
# The whole test suite: unit, moto integration, controller e2e (API emulator;
# a real API server too when KUBEBUILDER_ASSETS is set), chart checks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/python-env.sh
command -v helm >/dev/null 2>&1 || [ -x .tools/bin/helm ] || bash scripts/install-helm.sh
export MOTO_SERVER="$PWD/.venv/bin/moto_server"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
else
  cargo test --no-fail-fast "$@"
fi
